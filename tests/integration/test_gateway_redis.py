"""Gateway ↔ Redis: SUBSCRIBE on first local subscriber, UNSUBSCRIBE on last, restarts.

Real redis-server (killed and restarted on the same port), real push-gateway.
"""
import json
import socket
import time
import unittest

import harness
import wsclient
from wsclient import OP_TEXT


def batch_bytes(channel, items):
    return b'{"channel":"' + channel.encode() + b'","messages":[' + b",".join(items) + b"]}"


class SubscriptionLifecycleTest(harness.GatewayTestCase):

    def test_unsubscribe_stops_delivery_and_numsub_follows_last_subscriber(self):
        gw = self.start_gateway("--merge-ms", 100)
        a = self.ws(gw)
        b = self.ws(gw)
        self.assertEqual(self.numsub("u"), 0)
        self.subscribe(a, ["u"])
        self.assertEqual(self.numsub("u"), 1)  # ack only after Redis confirmed
        self.subscribe(b, ["u"])
        self.assertEqual(self.numsub("u"), 1)  # one Redis subscription per channel

        self.unsubscribe(a, ["u"])
        # b still holds the channel: the Redis subscription stays
        self.assertEqual(self.wait_numsub("u", 0, timeout=1.0), 1)
        self.assertEqual(self.publish("u", "after-a-left"), 1)
        self.assertEqual(b.recv_message(5), (OP_TEXT, batch_bytes("u", [b'"after-a-left"'])))
        self.assertEqual(a.expect_silence(0.5), [])

        self.unsubscribe(b, ["u"])
        self.assertEqual(self.wait_numsub("u", 0, timeout=5.0), 0)
        self.assertEqual(self.publish("u", "nobody"), 0)
        self.assertEqual(a.expect_silence(0.4), [])
        self.assertEqual(b.expect_silence(0.1), [])

        # both connections still work: resubscribe and receive
        self.subscribe(a, ["u"])
        self.assertEqual(self.numsub("u"), 1)
        self.assertEqual(self.publish("u", "back"), 1)
        self.assertEqual(a.recv_message(5), (OP_TEXT, batch_bytes("u", [b'"back"'])))

    def test_unsubscribe_one_of_two_channels_keeps_the_other(self):
        gw = self.start_gateway("--merge-ms", 100)
        c = self.ws(gw, "/ws?channels=keep,drop")
        self.expect_json(c, {"op": "subscribed", "channels": ["keep", "drop"]})
        self.unsubscribe(c, ["drop"])
        self.assertEqual(self.wait_numsub("drop", 0), 0)
        self.assertEqual(self.numsub("keep"), 1)
        self.assertEqual(self.publish("drop", "x"), 0)
        self.assertEqual(self.publish("keep", "y"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("keep", [b'"y"'])))
        self.assertEqual(c.expect_silence(0.4), [])

    def test_disconnect_of_last_subscriber_unsubscribes(self):
        gw = self.start_gateway("--merge-ms", 100)
        a = self.ws(gw, "/ws?channels=gone")
        self.expect_json(a, {"op": "subscribed", "channels": ["gone"]})
        b = self.ws(gw, "/ws?channels=gone")
        self.expect_json(b, {"op": "subscribed", "channels": ["gone"]})
        a.close(1000, wait=2)              # clean close
        self.assertEqual(self.wait_numsub("gone", 0, timeout=1.0), 1)
        b.abort()                          # TCP drop without a close frame
        self.assertEqual(self.wait_numsub("gone", 0, timeout=5.0), 0)
        self.assertEqual(gw.alive(), True)

    def test_channel_name_is_literal_not_a_pattern(self):
        gw = self.start_gateway("--merge-ms", 50)
        c = self.ws(gw)
        self.subscribe(c, ["news.:x@y/z_-"])
        self.assertEqual(self.numsub("news.:x@y/z_-"), 1)
        # the prefix is applied and nothing else is subscribed
        chans = sorted(x.decode() for x in self.redis.call("PUBSUB", "CHANNELS"))
        self.assertEqual(chans, ["push:news.:x@y/z_-"])
        self.assertEqual(self.redis.call("PUBSUB", "NUMPAT"), 0)

    def test_custom_prefix(self):
        gw = self.start_gateway("--merge-ms", 50, "--prefix", "other/")
        c = self.ws(gw)
        self.subscribe(c, ["pfx"])
        self.assertEqual(self.redis.numsub("other/pfx"), 1)
        self.assertEqual(self.redis.numsub("push:pfx"), 0)
        self.assertEqual(self.redis.call("PUBLISH", "push:pfx", "wrong"), 0)
        self.assertEqual(self.redis.call("PUBLISH", "other/pfx", "right"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("pfx", [b'"right"'])))


class SubscriptionRaceTest(harness.GatewayTestCase):

    def test_leave_and_rejoin_back_to_back_never_loses_the_subscription(self):
        # the last subscriber leaves (UNSUBSCRIBE goes out) and another joins before Redis
        # answered: the new ack must still mean "subscribed in Redis"
        gw = self.start_gateway("--merge-ms", 0)
        a, b = self.ws(gw), self.ws(gw)
        self.subscribe(a, ["churn"])
        holder, other = a, b
        for rnd in range(200):
            holder.send_json({"op": "unsubscribe", "channels": ["churn"]})
            other.send_json({"op": "subscribe", "channels": ["churn"]})
            self.assertEqual(holder.recv_json(5), {"op": "unsubscribed", "channels": ["churn"]})
            self.assertEqual(other.recv_json(5), {"op": "subscribed", "channels": ["churn"]}, rnd)
            self.assertEqual(self.publish("churn", "r%d" % rnd), 1, "round %d" % rnd)
            self.assertEqual(other.recv_message(5),
                             (OP_TEXT, batch_bytes("churn", [b'"r%d"' % rnd])), rnd)
            holder, other = other, holder
        self.assertEqual(self.numsub("churn"), 1)
        self.assertEqual(a.expect_silence(0.2) + b.expect_silence(0.2), [])
        self.unsubscribe(holder, ["churn"])
        self.assertEqual(self.wait_numsub("churn", 0), 0)

    def test_concurrent_first_subscribers_each_ack_means_subscribed(self):
        # many connections (spread over both shards) ask for the same fresh channel at once;
        # whichever ack comes first, a publish right after it reaches that connection
        gw = self.start_gateway("--merge-ms", 0, "--threads", 2)
        pool = self.pool()
        pool.connect(10, gw.host, gw.port, "/ws")
        for rnd in range(30):
            chan = "race-%d" % rnd
            pool.send_json_all({"op": "subscribe", "channels": [chan]})
            self.assertTrue(pool.wait_until(lambda p: any(p.messages), 5), rnd)
            first = [i for i, m in enumerate(pool.messages) if m]
            self.assertEqual(self.publish(chan, "first-%d" % rnd), 1, rnd)
            want = batch_bytes(chan, [b'"first-%d"' % rnd])
            for i in first:
                self.assertEqual(pool.pop_json(i), {"op": "subscribed", "channels": [chan]})
            self.assertTrue(pool.wait_until(lambda p: all(
                len(p.messages[i]) >= 1 for i in first), 5), rnd)
            for i in first:
                self.assertEqual(pool.messages[i].pop(0), (OP_TEXT, want), (rnd, i))
            # everyone else gets its ack (and maybe the message, if subscribed in time)
            self.assertTrue(pool.wait_until(lambda p: all(
                any(json.loads(d).get("op") == "subscribed" for _, d in p.messages[i])
                for i in range(len(p)) if i not in first), 5), rnd)
            # now everyone is acked, so everyone gets this one: it marks the end of the round
            self.assertEqual(self.publish(chan, "sync-%d" % rnd), 1, rnd)
            sync = batch_bytes(chan, [b'"sync-%d"' % rnd])
            self.assertTrue(pool.wait_until(lambda p: all(
                any(d == sync for _, d in p.messages[i]) for i in range(len(p))), 5), rnd)
            for i in range(len(pool)):
                msgs = [d for _, d in pool.messages[i]]
                acks = [d for d in msgs if json.loads(d).get("op") == "subscribed"]
                if i in first:
                    self.assertEqual(msgs, [sync], (rnd, i))
                else:
                    self.assertEqual([json.loads(d) for d in acks],
                                     [{"op": "subscribed", "channels": [chan]}], (rnd, i, msgs))
                    # published while its subscribe was in flight: delivered at most once
                    self.assertIn([d for d in msgs if d not in acks], ([sync], [want, sync]),
                                  (rnd, i, msgs))
                pool.messages[i] = []
            pool.send_json_all({"op": "unsubscribe", "channels": [chan]})
            self.assertTrue(pool.wait_each(1, 5))
            for i in range(len(pool)):
                self.assertEqual(pool.pop_json(i), {"op": "unsubscribed", "channels": [chan]})
            self.assertEqual(self.wait_numsub(chan, 0), 0)


class SlowRedisLinkTest(harness.GatewayTestCase):
    """The gateway reaches Redis through a proxy that delays gateway→Redis bytes by 300 ms.
    An ack sent before Redis confirmed the SUBSCRIBE is then caught with certainty: the test's
    PUBLISH (direct to Redis) would arrive before the SUBSCRIBE and reach nobody."""

    DELAY = 0.3

    def setUp(self):
        super().setUp()
        self.proxy = harness.DelayProxy(self.redis.port, up=self.DELAY)
        self.addCleanup(self.proxy.close)

    def test_ack_means_subscribed_in_redis_op_and_url_forms(self):
        gw = self._gateway("--merge-ms", 0)
        c = self.ws(gw)
        for i in range(8):
            chan = "slow-op-%d" % i
            t0 = time.time()
            self.subscribe(c, [chan])
            self.assertGreaterEqual(time.time() - t0, self.DELAY * 0.9, "ack came before Redis could answer")
            self.assertEqual(self.publish(chan, "m%d" % i), 1, chan)
            self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes(chan, [b'"m%d"' % i])))
        for i in range(8):
            chan = "slow-url-%d" % i
            u = self.ws(gw, "/ws?channels=" + chan)
            self.assertEqual(u.recv_json(5), {"op": "subscribed", "channels": [chan]})
            self.assertEqual(self.publish(chan, "u%d" % i), 1, chan)
            self.assertEqual(u.recv_message(5), (OP_TEXT, batch_bytes(chan, [b'"u%d"' % i])))

    def test_second_subscriber_while_subscribe_in_flight_waits_for_confirmation(self):
        gw = self._gateway("--merge-ms", 0, "--threads", 2)
        pool = self.pool()
        pool.connect(6, gw.host, gw.port, "/ws")
        for rnd in range(5):
            chan = "inflight-%d" % rnd
            pool.clients[0].send_json({"op": "subscribe", "channels": [chan]})
            time.sleep(self.DELAY / 3)  # the SUBSCRIBE is now on its way to Redis
            for c in pool.clients[1:]:
                c.send_json({"op": "subscribe", "channels": [chan]})
            # whichever ack arrives first, Redis must already have the subscription
            self.assertTrue(pool.wait_until(lambda p: any(p.messages), 5), rnd)
            self.assertEqual(self.publish(chan, "x%d" % rnd), 1, "round %d: ack before Redis confirmed" % rnd)
            want = batch_bytes(chan, [b'"x%d"' % rnd])
            self.assertTrue(pool.wait_each(2, 5), (rnd, pool.messages))
            for i in range(len(pool)):
                self.assertEqual([json.loads(d) for _, d in pool.messages[i]],
                                 [{"op": "subscribed", "channels": [chan]}, json.loads(want)], (rnd, i))
                pool.messages[i] = []
        self.assertEqual(self.numsub("inflight-0"), 1)

    def test_leave_and_rejoin_while_unsubscribe_in_flight(self):
        gw = self._gateway("--merge-ms", 0)
        a, b = self.ws(gw), self.ws(gw)
        self.subscribe(a, ["flip"])
        holder, other = a, b
        for rnd in range(10):
            holder.send_json({"op": "unsubscribe", "channels": ["flip"]})
            self.assertEqual(holder.recv_json(5), {"op": "unsubscribed", "channels": ["flip"]})
            other.send_json({"op": "subscribe", "channels": ["flip"]})
            self.assertEqual(other.recv_json(5), {"op": "subscribed", "channels": ["flip"]}, rnd)
            self.assertEqual(self.publish("flip", "f%d" % rnd), 1, "round %d" % rnd)
            self.assertEqual(other.recv_message(5), (OP_TEXT, batch_bytes("flip", [b'"f%d"' % rnd])))
            holder, other = other, holder
        time.sleep(self.DELAY * 3)  # let every in-flight command land
        self.assertEqual(self.numsub("flip"), 1)
        self.assertEqual(self.publish("flip", "end"), 1)
        self.assertEqual(holder.recv_message(5), (OP_TEXT, batch_bytes("flip", [b'"end"'])))
        self.assertEqual(other.expect_silence(0.3), [])

    def test_link_cut_resubscribes_exactly_once(self):
        gw = self._gateway("--merge-ms", 0)
        c = self.ws(gw, "/ws?channels=cut1,cut2")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["cut1", "cut2"]})
        for n in range(3):
            up_idx = len(gw.proc.lines)
            self.proxy.cut()
            i, _ = gw.wait_line("redis link down", timeout=10, start=up_idx)
            gw.wait_line("redis link up", timeout=15, start=i + 1)
            for ch in ("cut1", "cut2"):
                self.assertEqual(self.wait_numsub(ch, 1, timeout=5), 1, (n, ch))
            self.assertEqual(self.publish("cut1", "after-cut-%d" % n), 1)
            self.assertEqual(c.recv_message(5),
                             (OP_TEXT, batch_bytes("cut1", [b'"after-cut-%d"' % n])))
        time.sleep(self.DELAY * 3)
        self.assertEqual(self.numsub("cut1"), 1)
        self.assertEqual(self.numsub("cut2"), 1)
        self.assertEqual(self.redis.call("PUBSUB", "NUMPAT"), 0)

    def _gateway(self, *args):
        g = harness.GatewayProc(self.proxy.url, *args)
        self._gateways.append(g)
        return g


class RedisRestartTest(harness.GatewayTestCase):

    def test_redis_killed_and_restarted_clients_stay_and_receive(self):
        gw = self.start_gateway("--merge-ms", 100)
        c1 = self.ws(gw, "/ws?channels=r1,r2")
        self.expect_json(c1, {"op": "subscribed", "channels": ["r1", "r2"]})
        c2 = self.ws(gw)
        self.subscribe(c2, ["r1"])
        c3 = self.ws(gw)
        self.subscribe(c3, ["r3"])
        many = ["many-%d" % i for i in range(20)]
        c4 = self.ws(gw)
        self.subscribe(c4, many)
        for ch in ["r1", "r2", "r3"] + many:
            self.assertEqual(self.numsub(ch), 1, ch)
        reconnects0 = gw.metric("pushfabric_redis_reconnects_total")

        up_idx, _ = gw.wait_line("redis link up")
        self.redis.stop()  # SIGKILL
        down_idx, _ = gw.wait_line("redis link down", timeout=10, start=up_idx + 1)
        # r3's only subscriber leaves while Redis is down: it must not be resubscribed
        c3.close(1000, wait=2)
        # while Redis is down, the WebSocket side keeps working
        c2.send_json({"op": "ping"})
        self.assertEqual(c2.recv_json(5), {"op": "pong"})
        time.sleep(0.5)  # let the gateway try (and fail) to reconnect at least once
        self.redis.start()
        gw.wait_line("redis link up", timeout=15, start=down_idx + 1)
        for ch in ["r1", "r2"] + many:
            self.assertEqual(self.wait_numsub(ch, 1, timeout=10), 1, ch)
        self.assertEqual(self.numsub("r3"), 0)

        for c in (c1, c2, c4):
            self.assertTrue(c.is_open(), "client dropped across the Redis restart")
        self.assertEqual(self.publish("r1", "after-1"), 1)
        self.assertEqual(self.publish("r2", "after-2"), 1)
        self.assertEqual(self.publish(many[7], "after-m"), 1)
        got1 = sorted([c1.recv_message(5)[1], c1.recv_message(5)[1]])
        self.assertEqual(got1, [batch_bytes("r1", [b'"after-1"']), batch_bytes("r2", [b'"after-2"'])])
        self.assertEqual(c2.recv_message(5), (OP_TEXT, batch_bytes("r1", [b'"after-1"'])))
        self.assertEqual(c4.recv_message(5), (OP_TEXT, batch_bytes(many[7], [b'"after-m"'])))
        # exactly one subscription per channel, and it stays that way
        time.sleep(1.0)
        for ch in ["r1", "r2"] + many:
            self.assertEqual(self.numsub(ch), 1, ch)
        self.assertEqual(self.numsub("r3"), 0)
        for c in (c1, c2, c4):
            self.assertEqual(c.expect_silence(0.2), [])  # nothing delivered twice
        self.assertGreaterEqual(gw.metric("pushfabric_redis_reconnects_total"), reconnects0 + 1)
        self.assertTrue(gw.alive())

    def test_subscribe_while_redis_down_is_acked_only_once_redis_confirms(self):
        gw = self.start_gateway("--merge-ms", 50)
        c = self.ws(gw)
        self.subscribe(c, ["early"])
        self.redis.stop()
        down_idx, _ = gw.wait_line("redis link down", timeout=10)
        c.send_json({"op": "subscribe", "channels": ["late"]})
        # no ack can be true while Redis is down; an error reply is acceptable
        early = c.expect_silence(1.0)
        if early:
            self.assertEqual(len(early), 1, early)
            msg = json.loads(early[0][1])
            self.assertEqual((msg.get("op"), msg.get("code")), ("error", "subscribe_failed"), msg)
            self.redis.start()
            gw.wait_line("redis link up", timeout=15, start=down_idx + 1)
            self.subscribe(c, ["late"], timeout=10)
        else:
            self.redis.start()
            self.assertEqual(c.recv_json(15), {"op": "subscribed", "channels": ["late"]})
        self.assertEqual(self.numsub("late"), 1)
        self.assertEqual(self.wait_numsub("early", 1, timeout=10), 1)
        self.assertEqual(self.publish("late", "L"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("late", [b'"L"'])))

    def test_gateway_started_with_redis_down_connects_later(self):
        port = self.redis.port
        self.redis.stop()
        gw = self.start_gateway("--merge-ms", 50, wait_redis=False)
        c = self.ws(gw)
        c.send_json({"op": "ping"})
        self.assertEqual(c.recv_json(5), {"op": "pong"})
        time.sleep(1.0)
        self.assertEqual(gw.proc.count_lines("redis link up"), 0)
        self.redis.start()
        self.assertEqual(self.redis.port, port)
        gw.wait_line("redis link up", timeout=15)
        self.subscribe(c, ["later"], timeout=10)
        self.assertEqual(self.numsub("later"), 1)
        self.assertEqual(self.publish("later", "ok"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("later", [b'"ok"'])))


if __name__ == "__main__":
    unittest.main()
