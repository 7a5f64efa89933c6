"""Gateway delivery: merge windows, batch frame bytes, fan-out, ack-then-publish, encoding.

Real redis-server, real push-gateway, raw-socket WebSocket clients (wsclient.py).
"""
import json
import os
import time
import unittest

import harness
import wsclient
from wsclient import OP_TEXT


def batch_bytes(channel, items):
    """The exact frame the contract prescribes: items are the JSON texts (bytes)."""
    return b'{"channel":"' + channel.encode() + b'","messages":[' + b",".join(items) + b"]}"


class MergeWindowTest(harness.GatewayTestCase):

    def test_five_messages_in_one_window_are_one_frame_in_order(self):
        gw = self.start_gateway("--merge-ms", 1000)
        c = self.ws(gw)
        self.subscribe(c, ["news"])
        payloads = [b'{"n":1}', b"two", b"3", b"[4,5]", b'"five"']
        t0 = time.time()
        self.assertEqual(self.publish_many("news", payloads), [1] * 5)
        f = c.recv_frame(timeout=5)
        elapsed = time.time() - t0
        self.assertEqual((f.opcode, f.fin), (OP_TEXT, True), f)
        self.assertEqual(f.payload, batch_bytes("news", [
            b'{"n":1}', b'"two"', b"3", b"[4,5]", b'"five"']))
        # the window lasts --merge-ms from the first message: not flushed early, not late
        self.assertGreaterEqual(elapsed, 0.8, "batch flushed %.3fs after the first publish" % elapsed)
        self.assertLess(elapsed, 2.5, "batch flushed %.3fs after the first publish" % elapsed)
        # exactly one frame: nothing else arrives during the next window
        self.assertEqual(c.expect_silence(1.3), [])

    def test_next_window_is_a_new_frame(self):
        gw = self.start_gateway("--merge-ms", 300)
        c = self.ws(gw)
        self.subscribe(c, ["w"])
        self.assertEqual(self.publish_many("w", [b"a1", b"a2"]), [1, 1])
        self.assertEqual(c.recv_frame(5).payload, batch_bytes("w", [b'"a1"', b'"a2"']))
        self.assertEqual(self.publish_many("w", [b"b1", b"b2", b"b3"]), [1, 1, 1])
        self.assertEqual(c.recv_frame(5).payload, batch_bytes("w", [b'"b1"', b'"b2"', b'"b3"']))
        self.assertEqual(c.expect_silence(0.6), [])

    def test_two_channels_on_one_connection(self):
        gw = self.start_gateway("--merge-ms", 500)
        c = self.ws(gw, "/ws?channels=alpha,beta")
        self.expect_json(c, {"op": "subscribed", "channels": ["alpha", "beta"]})
        r = self.redis.conn()
        try:
            got = []
            for chan, p in [("alpha", b"a1"), ("beta", b"b1"), ("alpha", b"a2"), ("beta", b"b2"),
                            ("alpha", b"a3")]:
                got.append(r.call("PUBLISH", "push:" + chan, p))
        finally:
            r.close()
        self.assertEqual(got, [1] * 5)
        frames = sorted([c.recv_frame(5).payload, c.recv_frame(5).payload])
        self.assertEqual(frames, [batch_bytes("alpha", [b'"a1"', b'"a2"', b'"a3"']),
                                  batch_bytes("beta", [b'"b1"', b'"b2"'])])
        self.assertEqual(c.expect_silence(0.8), [])

    def test_merge_max_bytes_flushes_a_batch_early(self):
        gw = self.start_gateway("--merge-ms", 5000, "--merge-max-bytes", 1000)
        c = self.ws(gw)
        self.subscribe(c, ["full"])
        payloads = [b'{"i":%d,"pad":"%s"}' % (i, b"p" * 180) for i in range(10)]  # ~200 B each
        t0 = time.time()
        self.assertEqual(self.publish_many("full", payloads), [1] * 10)
        # 2 KB were published into a 1 KB batch limit: a frame is flushed long before 5 s
        f = c.recv_frame(timeout=3)
        self.assertLess(time.time() - t0, 3)
        frames = [f.payload]
        got = json.loads(f.payload)["messages"]
        while len(got) < 10:
            f = c.recv_frame(timeout=7)
            frames.append(f.payload)
            got.extend(json.loads(f.payload)["messages"])
        self.assertEqual([m["i"] for m in got], list(range(10)))
        self.assertGreaterEqual(len(frames), 2, frames)
        for fr in frames[:-1]:  # every early flush holds at most limit + one message
            self.assertLessEqual(len(fr), 1000 + 250, len(fr))
        # the frames concatenate to exactly the published payloads, in order
        items = b",".join(payloads)
        self.assertEqual(b",".join(fr[len(b'{"channel":"full","messages":['):-2] for fr in frames),
                         items)

    def test_merge_ms_zero_sends_each_message_at_once(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.ws(gw)
        self.subscribe(c, ["now"])
        for i in range(5):
            t0 = time.time()
            self.assertEqual(self.publish("now", "m%d" % i), 1)
            f = c.recv_frame(timeout=5)
            lat = time.time() - t0
            self.assertEqual(f.payload, batch_bytes("now", [b'"m%d"' % i]))
            self.assertLess(lat, 0.3, "message %d took %.3fs with --merge-ms 0" % (i, lat))
        # pipelined: still one frame per message, in publish order
        self.assertEqual(self.publish_many("now", [b"p%d" % i for i in range(5)]), [1] * 5)
        for i in range(5):
            self.assertEqual(c.recv_frame(5).payload, batch_bytes("now", [b'"p%d"' % i]))
        self.assertEqual(c.expect_silence(0.3), [])


class FanOutTest(harness.GatewayTestCase):
    CLIENTS = 300

    def test_two_shards_300_clients_get_byte_identical_frames(self):
        gw = self.start_gateway("--threads", 2, "--merge-ms", 300)
        pool = self.pool()
        # spread the source addresses over 127.0.0.2..5 (any loopback address works on Linux)
        pool.connect(self.CLIENTS, gw.host, gw.port, "/ws?channels=fan",
                     source_addrs=["127.0.0.%d" % i for i in range(2, 6)])
        self.assertTrue(pool.wait_each(1, 20), "not every client got its ack: %r" % (
            [i for i in range(len(pool)) if not pool.messages[i]][:10]))
        for i in range(len(pool)):
            self.assertEqual(pool.pop_json(i), {"op": "subscribed", "channels": ["fan"]}, i)
        self.assertEqual(self.numsub("fan"), 1)  # one Redis subscription for all shards
        self.assertEqual(gw.metric("pushfabric_connections"), self.CLIENTS)
        per_shard = {k: v for k, v in gw.metrics().items()
                     if k.startswith("pushfabric_connections{")}
        if per_shard:  # labeled per shard: both shards must hold connections
            self.assertEqual(len(per_shard), 2, per_shard)
            self.assertTrue(all(v > 0 for v in per_shard.values()), per_shard)

        for rnd in range(3):
            payloads = [json.dumps({"round": rnd, "i": i}).encode() for i in range(4)]
            payloads.append(b"plain text %d" % rnd)
            self.assertEqual(self.publish_many("fan", payloads), [1] * 5)
            want = batch_bytes("fan", payloads[:4] + [b'"plain text %d"' % rnd])
            self.assertTrue(pool.wait_each(1, 15), "round %d: %d/%d clients got the batch" % (
                rnd, sum(1 for m in pool.messages if m), len(pool)))
            got = set()
            for i in range(len(pool)):
                self.assertEqual(len(pool.messages[i]), 1, (i, pool.messages[i]))
                op, data = pool.messages[i].pop()
                self.assertEqual(op, OP_TEXT)
                got.add(data)
            self.assertEqual(got, {want})
        self.assertEqual([i for i, x in enumerate(pool.closed) if x], [])
        # no stray extra frames
        pool.wait_until(lambda p: False, 0.5)
        self.assertEqual(sum(len(m) for m in pool.messages), 0)


class AckThenPublishTest(harness.GatewayTestCase):

    def test_message_published_right_after_ack_is_delivered_50_fresh_channels(self):
        gw = self.start_gateway("--merge-ms", 20)
        tag = os.urandom(3).hex()
        c = self.ws(gw)
        pending = {}      # channel -> expected frame
        stash = []        # batches read while waiting for acks
        # 25 channels via the op on one connection
        for i in range(25):
            chan = "fresh-%s-op-%d" % (tag, i)
            c.send_json({"op": "subscribe", "channels": [chan]})
            while True:
                op, data = c.recv_message(5)
                msg = json.loads(data)
                if msg.get("op") == "subscribed":
                    self.assertEqual(msg, {"op": "subscribed", "channels": [chan]})
                    break
                stash.append(data)
            self.assertEqual(self.publish(chan, "hello-%d" % i), 1, chan)
            pending[chan] = batch_bytes(chan, [b'"hello-%d"' % i])
        for data in stash:
            self.assertEqual(data, pending.pop(json.loads(data)["channel"]))
        while any(k.startswith("fresh-%s-op-" % tag) for k in pending):
            op, data = c.recv_message(5)
            self.assertEqual(data, pending.pop(json.loads(data)["channel"]))
        # 25 channels via the URL form, one fresh connection each
        conns = []
        for i in range(25):
            chan = "fresh-%s-url-%d" % (tag, i)
            u = self.ws(gw, "/ws?channels=" + chan)
            self.expect_json(u, {"op": "subscribed", "channels": [chan]})
            self.assertEqual(self.publish(chan, "hello-%d" % i), 1, chan)
            conns.append((u, batch_bytes(chan, [b'"hello-%d"' % i])))
        for u, want in conns:
            self.assertEqual(u.recv_message(5), (OP_TEXT, want))
        self.assertEqual(pending, {})


class EncodingTest(harness.GatewayTestCase):

    def test_payload_encoding_exact_bytes(self):
        gw = self.start_gateway("--merge-ms", 300)
        c = self.ws(gw)
        self.subscribe(c, ["enc"])
        cases = [
            (b'{"a":1,"b":[true,null,"x"]}', b'{"a":1,"b":[true,null,"x"]}'),
            (b'{ "spaced" : [ 1 , 2 ] }', b'{ "spaced" : [ 1 , 2 ] }'),  # byte-for-byte
            (b"42", b"42"),
            (b"-1.5e3", b"-1.5e3"),
            (b"true", b"true"),
            (b"null", b"null"),
            (b'"already a string"', b'"already a string"'),
            (b"hello world", b'"hello world"'),
            (b"123abc", b'"123abc"'),
            (b'{"a":1', b'"{\\"a\\":1"'),
            (b'say "hi" \\ ok', b'"say \\"hi\\" \\\\ ok"'),
            (b"", b'""'),
        ]
        self.assertEqual(self.publish_many("enc", [p for p, _ in cases]), [1] * len(cases))
        f = c.recv_frame(5)
        self.assertEqual(f.payload, batch_bytes("enc", [w for _, w in cases]))

    def test_payload_encoding_escapes_and_utf8(self):
        gw = self.start_gateway("--merge-ms", 300)
        c = self.ws(gw)
        self.subscribe(c, ["esc"])
        cases = [
            (b"ctl:\x00\x01\x08\x0c\x1f\n\r\t:end", "ctl:\x00\x01\x08\x0c\x1f\n\r\t:end"),
            ("h\u00e9llo \u2713 \U0001F600".encode("utf-8"), "h\u00e9llo \u2713 \U0001F600"),
            (b"bad:a\xffb\x80c\xfe", "bad:a\ufffdb\ufffdc\ufffd"),
            (b"\x7f del", "\x7f del"),
            ('{"u":"\u00e9\U0001F600"}'.encode("utf-8"), {"u": "\u00e9\U0001F600"}),
        ]
        self.assertEqual(self.publish_many("esc", [p for p, _ in cases]), [1] * len(cases))
        f = c.recv_frame(5)
        self.assertEqual(f.opcode, OP_TEXT)
        text = f.payload.decode("utf-8")  # the frame is valid UTF-8
        self.assertEqual([b for b in f.payload if b < 0x20], [],
                         "raw control bytes inside the JSON frame: %r" % f.payload)
        self.assertEqual(json.loads(text), {"channel": "esc", "messages": [v for _, v in cases]})
        # the valid-JSON payload is still embedded byte-for-byte
        self.assertTrue(f.payload.endswith(b"," + cases[-1][0] + b"]}"), f.payload)


if __name__ == "__main__":
    unittest.main()
