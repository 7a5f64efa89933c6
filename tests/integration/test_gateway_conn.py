"""Gateway connections: ops and error replies, slow consumers, keepalive, HTTP endpoints.

Real redis-server, real push-gateway, raw-socket WebSocket clients (wsclient.py).
"""
import json
import socket
import time
import unittest

import harness
import wsclient
from wsclient import OP_TEXT, OP_PING, WSClosed


def batch_bytes(channel, items):
    return b'{"channel":"' + channel.encode() + b'","messages":[' + b",".join(items) + b"]}"


class OpsTest(harness.GatewayTestCase):

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway("--merge-ms", 50)

    def assert_alive(self, c):
        c.send_json({"op": "ping"})
        self.assertEqual(c.recv_json(5), {"op": "pong"})

    def assert_error(self, c, code, send_text):
        c.send_text(send_text)
        msg = c.recv_json(5)
        self.assertEqual(msg.get("op"), "error", (send_text, msg))
        self.assertEqual(msg.get("code"), code, (send_text, msg))
        self.assertIsInstance(msg.get("message"), str, msg)
        self.assertTrue(msg["message"], msg)
        self.assertEqual(sorted(msg), ["code", "message", "op"], msg)
        self.assert_alive(c)

    def test_ping_op_gets_pong(self):
        c = self.ws(self.gw)
        c.send_text('{"op":"ping"}')
        f = c.recv_frame(5)
        self.assertEqual((f.opcode, f.fin), (OP_TEXT, True))
        self.assertEqual(json.loads(f.payload), {"op": "pong"})
        for _ in range(3):
            self.assert_alive(c)

    def test_websocket_ping_frame_gets_pong_frame(self):
        c = self.ws(self.gw)
        c.send_ping(b"probe-123")
        f = c.recv_frame(5)
        self.assertEqual((f.opcode, f.fin, f.payload), (wsclient.OP_PONG, True, b"probe-123"))

    def test_url_channels_with_bad_escapes_get_an_error_not_silence(self):
        gw = self.start_gateway()
        for query in ("ab%00cd", "ok%00,x", "%zz", "news%2", "a,%zz"):
            c = self.ws(gw, "/ws?channels=" + query)
            err = c.recv_json()
            self.assertEqual((err["op"], err["code"]), ("error", "bad_channel"), query)
            self.assertIn("percent-escape", err["message"])
            c.send_json({"op": "ping"})
            self.assertEqual(c.recv_json(), {"op": "pong"})  # nothing else came before it
        self.assertEqual(self.redis.call("PUBSUB", "CHANNELS"), [])
        c = self.ws(gw, "/ws?channels=a%2Cb%40c")  # escapes that decode to valid names
        self.assertEqual(c.recv_json(), {"op": "subscribed", "channels": ["a", "b@c"]})

    def test_url_subscription_ack_and_single_ack_per_request(self):
        c = self.ws(self.gw, "/ws?channels=u1,u2")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["u1", "u2"]})
        self.assertEqual(self.numsub("u1"), 1)
        self.assertEqual(self.numsub("u2"), 1)
        # one ack per request, channels exactly as requested, in request order
        c.send_json({"op": "subscribe", "channels": ["zz", "aa", "mm"]})
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["zz", "aa", "mm"]})
        self.assertEqual(c.expect_silence(0.5), [])
        for ch in ("zz", "aa", "mm"):
            self.assertEqual(self.numsub(ch), 1, ch)

    def test_bad_channel_names_get_bad_channel_and_connection_stays(self):
        c = self.ws(self.gw)
        bad = ["", "a b", "star*", "q?", "[x]", "x" * 129, "caf\u00e9", "nl\nx", "comma,x",
               "quote\"x", "tab\tx", "back\\slash", "hash#", "pct%20"]
        for name in bad:
            self.assert_error(c, "bad_channel", json.dumps({"op": "subscribe", "channels": [name]}))
        # raw UTF-8 in the frame (not \u-escaped)
        self.assert_error(c, "bad_channel", '{"op":"subscribe","channels":["caf\u00e9"]}')
        self.assertEqual(sorted(self.redis.call("PUBSUB", "CHANNELS")), [],
                         "a Redis SUBSCRIBE was sent for an invalid channel")
        # 128 bytes of every allowed class is fine, and the connection still delivers
        good = ("AZaz09_-.:@/" * 11)[:128]
        self.subscribe(c, [good])
        self.assertEqual(self.numsub(good), 1)
        self.assertEqual(self.publish(good, "still-works"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes(good, [b'"still-works"'])))

    def test_bad_channel_names_hidden_in_json_escapes(self):
        c = self.ws(self.gw)
        # "nul\u0000x" decodes to a name containing NUL: it must not be cut to "nul"
        self.assert_error(c, "bad_channel", '{"op":"subscribe","channels":["nul\\u0000x"]}')
        self.assert_error(c, "bad_channel", '{"op":"subscribe","channels":["ctl\\u0001"]}')
        # a lone surrogate is not a character: bad_json or bad_channel, never a subscription
        c.send_text('{"op":"subscribe","channels":["sur\\ud800x"]}')
        msg = c.recv_json(5)
        self.assertEqual(msg.get("op"), "error", msg)
        self.assertIn(msg.get("code"), ("bad_json", "bad_channel"), msg)
        self.assert_alive(c)
        self.assertEqual(sorted(self.redis.call("PUBSUB", "CHANNELS")), [],
                         "a Redis SUBSCRIBE was sent for an invalid channel")

    def test_subscribing_twice_delivers_once(self):
        c = self.ws(self.gw, "/ws?channels=twice")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["twice"]})
        self.subscribe(c, ["twice"])            # again via the op
        self.assertEqual(self.numsub("twice"), 1)
        self.assertEqual(self.publish("twice", "once"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("twice", [b'"once"'])))
        self.assertEqual(c.expect_silence(0.5), [])
        # one unsubscribe is enough to stop it
        self.unsubscribe(c, ["twice"])
        self.assertEqual(self.wait_numsub("twice", 0), 0)

    def test_unsubscribe_from_a_channel_never_joined(self):
        c = self.ws(self.gw, "/ws?channels=joined")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["joined"]})
        self.unsubscribe(c, ["never-joined"])
        self.assertEqual(self.numsub("joined"), 1)
        self.assertEqual(self.publish("joined", "still"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("joined", [b'"still"'])))

    def test_many_channels_in_one_request_one_ack_in_order(self):
        c = self.ws(self.gw)
        chans = ["bulk-%03d" % i for i in range(200, 0, -1)]
        self.subscribe(c, chans, timeout=10)
        self.assertEqual(c.expect_silence(0.3), [])
        self.assertEqual(self.numsub(chans[0]), 1)
        self.assertEqual(self.numsub(chans[-1]), 1)
        self.assertEqual(self.publish(chans[123], "x"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes(chans[123], [b'"x"'])))

    def test_too_many_channels(self):
        gw = self.start_gateway("--merge-ms", 50, "--max-channels-per-conn", 3)
        c = self.ws(gw)
        self.subscribe(c, ["t1", "t2"])
        self.assert_error(c, "too_many_channels", '{"op":"subscribe","channels":["t3","t4"]}')
        self.assertEqual(self.numsub("t3"), 0)
        self.assertEqual(self.numsub("t4"), 0)
        self.subscribe(c, ["t3"])
        self.assert_error(c, "too_many_channels", '{"op":"subscribe","channels":["t4"]}')
        self.assertEqual(self.numsub("t4"), 0)
        # leaving one makes room again
        self.unsubscribe(c, ["t1"])
        self.subscribe(c, ["t4"])
        self.assertEqual(self.publish("t4", "in"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("t4", [b'"in"'])))

    def test_error_codes_for_bad_requests(self):
        c = self.ws(self.gw)
        self.assert_error(c, "bad_json", "this is not json")
        self.assert_error(c, "bad_json", '{"op":"subscribe",')
        self.assert_error(c, "unknown_op", '{"op":"dance"}')
        self.assert_error(c, "bad_request", '{"op":"subscribe"}')
        self.assert_error(c, "bad_request", '{"op":"subscribe","channels":"a"}')
        c.send_text('{"op":"subscribe","channels":[1]}')  # wrong element type: either code
        msg = c.recv_json(5)
        self.assertEqual(msg.get("op"), "error", msg)
        self.assertIn(msg.get("code"), ("bad_request", "bad_channel"), msg)
        self.assert_alive(c)
        self.assert_error(c, "bad_request", '{"op":"unsubscribe"}')
        self.assertEqual(self.redis.call("PUBSUB", "CHANNELS"), [])
        self.subscribe(c, ["fine"])


class SlowConsumerTest(harness.GatewayTestCase):

    def test_one_message_bigger_than_the_cap_reaches_a_reader_with_nothing_pending(self):
        # Only a backlog makes a reader slow: a single 200 KB message under a 64 KiB cap is
        # delivered whole, and the connection stays open.
        gw = self.start_gateway("--merge-ms", 0, "--max-pending-bytes", 65536)
        c = self.ws(gw, "/ws?channels=big")
        self.assertEqual(c.recv_json(), {"op": "subscribed", "channels": ["big"]})
        payload = "x" * 200000
        self.assertEqual(self.publish("big", payload), 1)
        self.assertEqual(c.recv_json(timeout=10), {"channel": "big", "messages": [payload]})
        c.send_json({"op": "ping"})
        self.assertEqual(c.recv_json(), {"op": "pong"})
        self.assertEqual(gw.metric("pushfabric_slow_consumers_closed_total"), 0)

    def test_client_that_never_reads_is_closed_others_keep_receiving(self):
        gw = self.start_gateway("--merge-ms", 0, "--max-pending-bytes", 65536)
        self.assertEqual(gw.metric("pushfabric_slow_consumers_closed_total"), 0)
        slow = self.ws(gw, "/ws?channels=big", rcvbuf=4096)
        self.assertEqual(slow.recv_json(5), {"op": "subscribed", "channels": ["big"]})
        fast = self.ws(gw, "/ws?channels=big")
        self.assertEqual(fast.recv_json(5), {"op": "subscribed", "channels": ["big"]})

        # lockstep: the fast client has read message i before i+1 is published, so it is
        # never more than one message behind; the slow one never reads. 16 MB in total is far
        # more than the kernel buffers (tcp_wmem max 4 MB) plus the 64 KiB cap can absorb.
        n, size = 1000, 16 * 1024
        pad = "x" * size
        got = []
        r = self.redis.conn()
        try:
            for i in range(n):
                self.assertEqual(r.call("PUBLISH", "push:big", '{"seq":%d,"pad":"%s"}' % (i, pad)), 1)
                while len(got) <= i:
                    op, data = fast.recv_message(5)
                    got.extend(json.loads(data)["messages"])
        finally:
            r.close()
        self.assertEqual([m["seq"] for m in got], list(range(n)))
        self.assertTrue(all(m["pad"] == pad for m in got))

        # the slow client: whatever is buffered, then a close (1008 "slow consumer") or EOF
        t0 = time.time()
        seen = 0
        slow.auto_close_reply = False
        try:
            while True:
                f = slow.recv_frame(15)
                if f.opcode == wsclient.OP_CLOSE:
                    self.assertEqual(f.close_info(), (1008, b"slow consumer"))
                    slow.wait_closed(5)
                    break
                seen += 1
        except WSClosed:
            pass
        self.assertLess(time.time() - t0, 15)
        self.assertTrue(slow.eof or slow.close_code == 1008)
        self.assertLess(seen, n, "the slow client was never cut off")
        self.assertEqual(gw.metric("pushfabric_slow_consumers_closed_total"), 1)
        # the fast client still works
        self.assertTrue(fast.is_open())
        self.assertEqual(self.publish("big", "after"), 1)
        self.assertEqual(fast.recv_message(5), (OP_TEXT, batch_bytes("big", [b'"after"'])))
        self.assertEqual(self.numsub("big"), 1)
        self.assertEqual(gw.metric("pushfabric_connections"), 1)


class KeepaliveTest(harness.GatewayTestCase):

    def test_ping_answering_client_stays_silent_one_is_closed(self):
        gw = self.start_gateway("--ping-interval", 1, "--ping-timeout", 1)
        pool = self.pool()
        t0 = time.time()
        pool.connect(2, gw.host, gw.port, "/ws")
        good, bad = pool.clients
        bad.auto_pong = False
        closed_at = None
        while time.time() - t0 < 5.5:
            pool.poll(0.1)
            if closed_at is None and pool.closed[1] is not None:
                closed_at = time.time() - t0
        self.assertIsNone(pool.closed[0], "a client answering pings was closed: %r" % pool.closed[0])
        self.assertGreaterEqual(len(good.pings), 2, "expected pings every ~1s: %r" % good.pings)
        self.assertGreaterEqual(len(bad.pings), 1)
        self.assertIsNotNone(closed_at, "a client that never answers pings is still open after 5.5s")
        self.assertGreaterEqual(closed_at, 1.5, "closed after %.2fs, before interval+timeout" % closed_at)
        self.assertLessEqual(closed_at, 4.5, "closed only after %.2fs" % closed_at)
        # the good client is fully usable
        good.sock.settimeout(None)
        good.send_json({"op": "ping"})
        self.assertEqual(good.recv_json(5), {"op": "pong"})

    def test_silent_peer_subscriptions_are_freed(self):
        gw = self.start_gateway("--ping-interval", 1, "--ping-timeout", 1)
        c = self.ws(gw, "/ws?channels=quiet")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["quiet"]})
        c.auto_pong = False
        self.assertEqual(self.numsub("quiet"), 1)
        code, reason, eof = c.wait_closed(6)
        self.assertTrue(eof)
        self.assertEqual(self.wait_numsub("quiet", 0, timeout=3), 0)


class HttpEndpointsTest(harness.GatewayTestCase):

    def test_startup_line_and_demo_page(self):
        gw = self.start_gateway()
        _, line = gw.wait_line("listening on")
        self.assertIn(str(gw.port), line)
        r = gw.http_get("/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type", "").startswith("text/html"), r.headers)
        self.assertIn(b"<html", r.body.lower())
        self.assertIn(b"/ws", r.body)

    def test_metrics(self):
        gw = self.start_gateway()
        r = gw.http_get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type", "").startswith("text/plain"), r.headers)
        m = harness.parse_metrics(r.body.decode())
        for name in ("pushfabric_connections", "pushfabric_slow_consumers_closed_total",
                     "pushfabric_redis_reconnects_total"):
            self.assertTrue(name in m or any(k.startswith(name + "{") for k in m), (name, r.body))
        self.assertEqual(gw.metric("pushfabric_connections"), 0)
        cs = [self.ws(gw) for _ in range(3)]
        for c in cs:  # one round trip each so the gateway has registered them
            c.send_json({"op": "ping"})
            self.assertEqual(c.recv_json(5), {"op": "pong"})
        self.assertEqual(gw.metric("pushfabric_connections"), 3)
        cs[0].close(1000, wait=2)
        deadline = time.time() + 5
        while gw.metric("pushfabric_connections") != 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(gw.metric("pushfabric_connections"), 2)

    def test_upgrade_to_another_path_is_refused_with_http_error(self):
        # RFC 6455 §4.2.2: a requested service that is not available gets an HTTP error
        # (such as 404), not a silent TCP close
        gw = self.start_gateway()
        for path in ("/nope", "/ws/", "/wsx", "/"):
            try:
                c, resp = wsclient.WSClient.try_connect(gw.host, gw.port, path)
            except WSClosed:
                c = resp = None
            if resp is None:
                self.fail("upgrade request to %s: connection closed without an HTTP response" % path)
            self.assertIsNone(c, "upgraded a WebSocket at %s" % path)
            self.assertGreaterEqual(resp.status, 400, (path, resp))
            self.assertLess(resp.status, 500, (path, resp))
        # and /ws itself still upgrades
        self.ws(gw).close()

    def test_plain_http_to_ws_is_not_upgraded(self):
        gw = self.start_gateway()
        r = gw.http_get("/ws")
        self.assertNotEqual(r.status, 101)
        self.assertGreaterEqual(r.status, 400)
        self.assertLess(r.status, 500)


if __name__ == "__main__":
    unittest.main()
