"""The JavaScript client (clients/js/pushfabric.js) under Node against a real gateway.

Each test runs `node tests/integration/js/driver.mjs PORT OPTIONS` (a PushClient using the
node:net WebSocket of js/ws-node.mjs, since Node 18 has no global one), sends it JSON commands
on stdin and asserts on the JSON events it prints. Real redis-server, real push-gateway.
Node.js >= 18 is required: without it these tests fail (they do not skip).
"""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "js", "driver.mjs")


def node_binary():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise AssertionError(
            "Node.js is not installed (no `node` or `nodejs` on PATH): the JS client tests need "
            "Node >= 18 (Debian: apt-get install nodejs)")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
    major = int(out.strip().lstrip("v").split(".")[0])
    if major < 18:
        raise AssertionError("Node.js %s is too old: the JS client needs Node >= 18" % out.strip())
    return node


class JSClient:
    """One driver.mjs process; its stdout events are parsed as they arrive."""

    def __init__(self, port, **options):
        self.proc = harness.Proc([node_binary(), DRIVER, str(port), json.dumps(options)],
                                 stdin=subprocess.PIPE)
        self.cursor = 0
        self.next_id = 0
        self.wait("ready")

    def events(self, ev=None):
        out = []
        for line in list(self.proc.stdout_lines):
            try:
                e = json.loads(line)
            except ValueError:
                raise AssertionError("driver printed a non-JSON line: %r" % line)
            if ev is None or e.get("ev") == ev:
                out.append(e)
        return out

    def wait(self, ev, timeout=10.0, **match):
        """The first event `ev` (with the given members) after the cursor; moves the cursor."""
        deadline = time.time() + timeout
        while True:
            lines = list(self.proc.stdout_lines)
            for i in range(self.cursor, len(lines)):
                e = json.loads(lines[i])
                if e.get("ev") == ev and all(e.get(k) == v for k, v in match.items()):
                    self.cursor = i + 1
                    return e
            if time.time() > deadline or not self.proc.alive():
                raise AssertionError("no %s %r event from the JS client within %.1fs; events:\n%s\n"
                                     "stderr:\n%s" % (ev, match, timeout, "\n".join(lines[-40:]),
                                                      "\n".join(self.proc.lines[-20:])))
            time.sleep(0.01)

    def cmd(self, **c):
        self.proc.p.stdin.write((json.dumps(c) + "\n").encode())
        self.proc.p.stdin.flush()

    def request(self, op, channels, timeout=10.0):
        """subscribe/unsubscribe; returns the resolved or rejected event."""
        self.next_id += 1
        self.cmd(cmd=op, id=self.next_id, channels=channels)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events():
                if e.get("ev") in ("resolved", "rejected") and e.get("id") == self.next_id:
                    return e
            time.sleep(0.01)
        raise AssertionError("%s %r never settled; events:\n%s" % (
            op, channels, "\n".join(self.proc.stdout_lines[-40:])))

    def subscribe(self, channels):
        e = self.request("subscribe", channels)
        if e["ev"] != "resolved":
            raise AssertionError("subscribe %r rejected: %r" % (channels, e))
        return e

    def stats(self):
        n = len(self.events("stats"))
        self.cmd(cmd="stats")
        deadline = time.time() + 5
        while len(self.events("stats")) <= n:
            if time.time() > deadline:
                raise AssertionError("no stats from the JS client")
            time.sleep(0.01)
        return self.events("stats")[n]

    def messages(self, channel=None):
        return [e["message"] for e in self.events("message")
                if channel is None or e["channel"] == channel]

    def wait_messages(self, channel, n, timeout=10.0):
        deadline = time.time() + timeout
        while len(self.messages(channel)) < n:
            if time.time() > deadline or not self.proc.alive():
                raise AssertionError("%d of %d messages on %s; events:\n%s" % (
                    len(self.messages(channel)), n, channel, "\n".join(self.proc.stdout_lines[-40:])))
            time.sleep(0.01)
        return self.messages(channel)

    def stop(self):
        if self.proc.alive():
            try:
                self.cmd(cmd="exit")
                self.proc.p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.proc.stop(signal.SIGKILL)
        try:
            self.proc.p.stdin.close()
        except OSError:
            pass


class JSClientTest(harness.GatewayTestCase):

    def client(self, gw_or_port, **options):
        port = gw_or_port if isinstance(gw_or_port, int) else gw_or_port.port
        c = JSClient(port, **options)
        self.addCleanup(c.stop)
        return c

    def test_node_is_available(self):
        node_binary()  # fails with a clear message when Node.js is missing or too old

    def test_batch_is_unpacked_into_messages_in_order(self):
        gw = self.start_gateway("--merge-ms", 300)
        c = self.client(gw)
        c.wait("open")
        c.cmd(cmd="on", channel="news")
        self.assertEqual(c.subscribe(["news"])["value"], ["news"])
        payloads = [b"hi", b'{"n":1}', b"2", b"[1, 2]\n", b'a"b']
        self.assertEqual(self.publish_many("news", payloads), [1] * 5)
        self.assertEqual(c.wait_messages("news", 5), ["hi", {"n": 1}, 2, [1, 2], 'a"b'])
        time.sleep(0.5)  # nothing else arrives
        s = c.stats()
        self.assertEqual(len(c.messages()), 5)
        self.assertEqual((s["batches"], s["messages"]), (1, 5), s)  # one merged frame, 5 calls

    def test_subscribe_resolves_after_ack_and_next_publish_arrives(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw)
        c.cmd(cmd="on", channel="a")
        c.cmd(cmd="on", channel="b")
        e = c.subscribe(["a", "b"])
        self.assertEqual(e["value"], ["a", "b"])
        # resolved only after Redis confirmed: the very next PUBLISH reaches this gateway
        self.assertEqual(self.publish("a", '{"x":1}'), 1)
        self.assertEqual(self.publish("b", "plain"), 1)
        self.assertEqual(c.wait_messages("a", 1), [{"x": 1}])
        self.assertEqual(c.wait_messages("b", 1), ["plain"])
        self.assertEqual(c.stats()["channels"], ["a", "b"])

    def test_channels_option_subscribes_on_connect(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw, channels=["pre1", "pre2"])
        c.cmd(cmd="on", channel="pre2")
        self.assertEqual(c.wait("subscribed")["channels"], ["pre1", "pre2"])
        self.assertEqual(self.publish("pre2", "p"), 1)
        self.assertEqual(c.wait_messages("pre2", 1), ["p"])

    def test_bad_channel_rejects_with_the_error_code(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw)
        c.cmd(cmd="on", channel="ok")
        e = c.request("subscribe", ["ok", "bad channel"])
        self.assertEqual(e["ev"], "rejected", e)
        self.assertEqual(e["code"], "bad_channel", e)
        self.assertEqual(e["channels"], ["ok", "bad channel"], e)
        self.assertEqual(self.numsub("ok"), 0)  # refused as a whole
        e = c.request("subscribe", ["x" * 129])
        self.assertEqual((e["ev"], e["code"]), ("rejected", "bad_channel"), e)
        # the connection stays open and the client keeps working
        c.subscribe(["ok"])
        self.assertEqual(self.publish("ok", "1"), 1)
        self.assertEqual(c.wait_messages("ok", 1), [1])
        s = c.stats()
        self.assertEqual((s["opens"], s["reconnects"], s["channels"]), (1, 0, ["ok"]), s)

    def test_too_many_channels_rejects(self):
        gw = self.start_gateway("--merge-ms", 0, "--max-channels-per-conn", 2)
        c = self.client(gw)
        c.subscribe(["c1", "c2"])
        e = c.request("subscribe", ["c3"])
        self.assertEqual((e["ev"], e["code"]), ("rejected", "too_many_channels"), e)
        self.assertEqual(c.stats()["channels"], ["c1", "c2"])

    def test_redis_refused_channel_rejects_with_subscribe_failed(self):
        self.redis.call("ACL", "SETUSER", "gw", "on", ">gwpass", "resetchannels", "&push:ok*",
                        "~*", "+@all")
        gw = harness.GatewayProc("redis://gw:gwpass@127.0.0.1:%d" % self.redis.port,
                                 "--merge-ms", 0)
        self._gateways.append(gw)
        c = self.client(gw)
        c.cmd(cmd="on", channel="ok1")
        e = c.request("subscribe", ["ok1", "nope"])
        self.assertEqual((e["ev"], e["code"], e["channels"]), ("rejected", "subscribe_failed", ["nope"]), e)
        self.assertIn("nope", e["message"])
        self.assertEqual(c.stats()["channels"], ["ok1"])  # the accepted part holds
        self.assertEqual(self.publish("ok1", "still"), 1)
        self.assertEqual(c.wait_messages("ok1", 1), ["still"])

    def test_unsubscribe_stops_delivery(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw)
        c.cmd(cmd="on", channel="a")
        c.cmd(cmd="on", channel="b")
        c.subscribe(["a", "b"])
        self.assertEqual(self.publish("a", "a1"), 1)
        self.assertEqual(c.wait_messages("a", 1), ["a1"])
        e = c.request("unsubscribe", ["a"])
        self.assertEqual((e["ev"], e["value"]), ("resolved", ["a"]), e)
        self.assertEqual(self.wait_numsub("a", 0), 0)
        self.assertEqual(self.publish("a", "a2"), 0)
        self.assertEqual(self.publish("b", "b1"), 1)
        self.assertEqual(c.wait_messages("b", 1), ["b1"])
        time.sleep(0.3)
        self.assertEqual(c.messages("a"), ["a1"])
        self.assertEqual(c.stats()["channels"], ["b"])

    def test_reconnects_with_backoff_and_resubscribes(self):
        gw = self.start_gateway("--merge-ms", 0)
        port = gw.port
        bmin, bmax = 100, 800
        c = self.client(gw, backoff={"min": bmin, "max": bmax}, idlePingMs=0)
        c.cmd(cmd="on", channel="news")
        c.subscribe(["news"])
        c.subscribe(["sport"])
        self.assertEqual(self.publish("news", "before"), 1)
        self.assertEqual(c.wait_messages("news", 1), ["before"])

        gw.stopped_by_test = True
        gw.stop(signal.SIGKILL)
        closed = c.wait("close", timeout=5)
        self.assertEqual((closed["code"], closed["wasClean"]), (1006, False), closed)
        # let attempts 0..3 fail against the closed port (each fails at once: connection refused)
        c.wait("reconnecting", timeout=10, attempt=4)

        gw2 = self.start_gateway("--merge-ms", 0, port=port)
        opened = c.wait("open", timeout=10)
        self.assertTrue(opened["reconnect"])
        self.assertEqual(c.wait("subscribed", timeout=10)["channels"], ["news", "sport"])
        self.assertEqual(self.numsub("news"), 1)
        self.assertEqual(self.publish("news", "after"), 1)
        self.assertEqual(c.wait_messages("news", 2), ["before", "after"])

        evs = [e for e in c.events() if e["ev"] in ("close", "reconnecting", "open")]
        evs = evs[[i for i, e in enumerate(evs) if e["ev"] == "close"][0]:]
        retries = [e for e in evs if e["ev"] == "reconnecting"]
        self.assertGreaterEqual(len(retries), 5, evs)
        for i, r in enumerate(retries):
            self.assertEqual(r["attempt"], i, retries)
            d = min(bmax, bmin * 2 ** i)
            self.assertEqual(r["max"], d, r)
            self.assertTrue(d / 2 <= r["delay"] <= d, "attempt %d: delay %.1f ms not in [%g, %g]" % (
                i, r["delay"], d / 2, d))
        # and the client really waited that long before the next attempt ended
        for r, nxt in zip(evs, evs[1:]):
            if r["ev"] == "reconnecting":
                self.assertGreaterEqual(nxt["t"] - r["t"], r["delay"] - 5, (r, nxt))
        s = c.stats()
        self.assertEqual((s["opens"], s["reconnects"], s["state"]), (2, 1, "open"), s)
        self.assertEqual(gw2.metric("pushfabric_connections"), 1)

    def test_idle_ping_gets_pong(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw, idlePingMs=150, pongTimeoutMs=2000)
        c.wait("open")
        for _ in range(3):
            c.wait("pong", timeout=5)
        s = c.stats()
        self.assertGreaterEqual(s["pings"], 3, s)
        self.assertIn(s["pongs"], (s["pings"], s["pings"] - 1), s)  # one may be on its way
        self.assertEqual((s["opens"], s["reconnects"], s["state"]), (1, 0, "open"), s)
        self.assertEqual(c.events("close"), [])

    def test_missing_pong_is_a_dead_connection(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw, idlePingMs=200, pongTimeoutMs=300, backoff={"min": 50, "max": 200})
        c.cmd(cmd="on", channel="n")
        c.subscribe(["n"])
        gw.proc.send_signal(signal.SIGSTOP)  # TCP stays up, nothing answers
        try:
            t0 = time.time()
            err = c.wait("error", timeout=5, code="pong_timeout")
            closed = c.wait("close", timeout=5)
            self.assertEqual((closed["code"], closed["wasClean"]), (4000, False), closed)
            c.wait("reconnecting", timeout=5)
            self.assertGreaterEqual(time.time() - t0, 0.3)
            self.assertTrue(err["message"])
        finally:
            gw.proc.send_signal(signal.SIGCONT)
        c.wait("open", timeout=10, reconnect=True)
        self.assertEqual(c.wait("subscribed", timeout=10)["channels"], ["n"])
        self.assertEqual(self.publish("n", "back"), 1)
        self.assertEqual(c.wait_messages("n", 1), ["back"])

    def test_answers_websocket_pings(self):
        # the gateway PINGs after 1 s idle and drops a peer silent for 2 s: ws-node must PONG
        gw = self.start_gateway("--merge-ms", 0, "--ping-interval", 1, "--ping-timeout", 1)
        c = self.client(gw, idlePingMs=0)
        c.subscribe(["k"])
        c.cmd(cmd="on", channel="k")
        time.sleep(4)
        self.assertEqual(c.events("close"), [])
        self.assertEqual(self.publish("k", "ok"), 1)
        self.assertEqual(c.wait_messages("k", 1), ["ok"])

    def test_close_stops_for_good(self):
        gw = self.start_gateway("--merge-ms", 0)
        c = self.client(gw, backoff={"min": 50, "max": 100})
        c.subscribe(["z"])
        c.cmd(cmd="close")
        closed = c.wait("close", timeout=5)
        self.assertEqual((closed["code"], closed["wasClean"]), (1000, True), closed)
        e = c.request("subscribe", ["z"])
        self.assertEqual((e["ev"], e["code"]), ("rejected", "closed"), e)
        time.sleep(0.5)
        self.assertEqual(c.events("reconnecting"), [])
        self.assertEqual(c.stats()["state"], "closed")
        self.assertEqual(self.wait_numsub("z", 0), 0)


if __name__ == "__main__":
    unittest.main()
