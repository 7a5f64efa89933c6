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
            for i in range(len(pool)):
                if i in first:
                    continue
                msgs = [d for _, d in pool.messages[i]]
                acks = [d for d in msgs if json.loads(d).get("op") == "subscribed"]
                self.assertEqual([json.loads(d) for d in acks],
                                 [{"op": "subscribed", "channels": [chan]}], (rnd, i, msgs))
                # published while its subscribe was in flight: delivered at most once
                self.assertIn([d for d in msgs if d not in acks], ([], [want]), (rnd, i, msgs))
                pool.messages[i] = []
            pool.send_json_all({"op": "unsubscribe", "channels": [chan]})
            self.assertTrue(pool.wait_each(1, 5))
            for i in range(len(pool)):
                self.assertEqual(pool.pop_json(i), {"op": "unsubscribed", "channels": [chan]})
            self.assertEqual(self.wait_numsub(chan, 0), 0)


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
