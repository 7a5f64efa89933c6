"""Faults and overload (issue 3, "Faults and overload"): slow consumers, silent peers,
subscribe/unsubscribe churn, Redis faults, file-descriptor exhaustion, graceful shutdown.

Real redis-server, real push-gateway processes, raw-socket WebSocket clients (wsclient.py).
Every test has a bounded running time; the numbers each one asserts are stated next to it.
"""
import json
import re
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
import wsclient
from wsclient import OP_TEXT, OP_CLOSE, WSClosed

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def batch_bytes(channel, items):
    return b'{"channel":"' + channel.encode() + b'","messages":[' + b",".join(items) + b"]}"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK   # fields 14 and 15 of stat(5)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def shard_counts(gw):
    m = gw.metrics()
    return {k: v for k, v in m.items() if k.startswith("pushfabric_connections{")}


def gateway_links(redis):
    """Redis connections named push-gateway (CLIENT SETNAME by the gateway), with sub counts."""
    out = []
    for line in redis.call("CLIENT", "LIST").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("name") == "push-gateway":
            out.append(f)
    return out


class WrappedGateway(harness.GatewayProc):
    """A GatewayProc whose command line is prefixed (e.g. by `prlimit --nofile=128:128`);
    prlimit execs the gateway, so .pid is the gateway's own PID."""

    def __init__(self, wrapper, redis, *args, timeout=15.0):
        self.host = "127.0.0.1"
        self.port = harness.free_port()
        self.argv = list(wrapper) + [harness.GATEWAY, "--listen", "127.0.0.1:%d" % self.port,
                                     "--redis", redis.url] + [str(a) for a in args]
        self.proc = harness.Proc(self.argv)
        try:
            self.proc.wait_line("listening on", timeout)
            self.proc.wait_line("redis link up", timeout)
        except BaseException:
            self.proc.stop(signal.SIGKILL)
            raise


class FaultTestCase(harness.GatewayTestCase):

    def ping_ok(self, c, timeout=5.0):
        c.send_json({"op": "ping"})
        self.assertEqual(c.recv_json(timeout), {"op": "pong"})

    def wait_metric(self, gw, name, want, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            v = gw.metric(name)
            if v == want or time.time() > deadline:
                return v
            time.sleep(0.05)

    def recv_batches(self, c, n, timeout=5.0):
        return sorted(c.recv_message(timeout)[1] for _ in range(n))


# ---------------------------------------------------------------------------------------


STAMP = re.compile(rb'"seq":(\d+),"t":([0-9.]+)')


class SlowConsumerOverloadTest(FaultTestCase):
    """300 clients that never read + 5 fast readers on one channel, 1 MB/s for 8 s."""

    N_SLOW = 300
    N_FAST = 5
    RATE = 100            # messages per second
    SECONDS = 8
    PAD = 10000           # ~10 KB per message -> ~1 MB/s
    # --max-pending-bytes: ~200 messages (2 s of this stream) of backlog. The fast readers are
    # Python threads on a busy 2-core box; with a quarter of it they were closed as slow at
    # times, and even with 1 MiB once under ASan while another test suite loaded the machine.
    CAP = 2 * 1048576
    RSS_MARGIN_KIB = 64 * 1024   # stated bound: peak RSS <= RSS after connecting + 64 MiB
    CLOSE_BOUND = 8.0     # every never-reading client closed within 8 s of the first publish
    # Fast readers' p99 publish->receive latency. Latency targets live in bench/ (measured as
    # ratios on a quiet box); this bound only catches a transport that stalls fast readers behind
    # slow ones (the lws transport delivered 11 of 800 here). Observed on the shared 2-core box:
    # p99 0.01-0.56 s plain, up to 0.83 s under ASan, with the Python readers sharing the cores.
    P99_BOUND = 2.0
    EOF_BOUND = 20.0      # never-reading clients see EOF/RST within 20 s once they read

    def test_never_reading_clients_are_cut_memory_bounded_fast_clients_keep_latency(self):
        gw = self.start_gateway("--merge-ms", 0, "--threads", 2,
                                "--max-pending-bytes", self.CAP)
        chan = "firehose"
        fds0 = open_fds(gw.pid)
        slow = []
        for i in range(self.N_SLOW):
            c = self.ws(gw, "/ws?channels=" + chan, rcvbuf=4096)
            self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": [chan]})
            slow.append(c)
        fast = []
        for i in range(self.N_FAST):
            c = self.ws(gw, "/ws?channels=" + chan)
            self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": [chan]})
            fast.append(c)
        self.assertEqual(self.numsub(chan), 1)
        self.assertEqual(gw.metric("pushfabric_connections"), self.N_SLOW + self.N_FAST)
        self.assertEqual(gw.metric("pushfabric_slow_consumers_closed_total"), 0)
        rss0 = rss_kib(gw.pid)

        total = self.RATE * self.SECONDS
        # fast readers: one thread, selectors; each message's latency from its payload stamp
        got = [[] for _ in fast]          # seq per fast client, in arrival order
        lat = []
        errors = []
        stop = threading.Event()

        def reader():
            sel = selectors.DefaultSelector()
            for i, c in enumerate(fast):
                c.sock.setblocking(False)
                sel.register(c.sock, selectors.EVENT_READ, i)
            try:
                while not stop.is_set() and not all(len(g) >= total for g in got):
                    for key, _ in sel.select(0.1):
                        i = key.data
                        c = fast[i]
                        try:
                            d = c.sock.recv(1 << 20)
                        except BlockingIOError:
                            continue
                        if not d:
                            errors.append("fast client %d: EOF" % i)
                            sel.unregister(c.sock)
                            continue
                        c.feed(d)
                        now = time.time()
                        while True:
                            f = c.pop_frame()
                            if f is None:
                                break
                            if f.opcode == OP_CLOSE:
                                errors.append("fast client %d closed: %r" % (i, f.close_info()))
                            elif f.opcode == OP_TEXT:
                                # a regex, not json.loads: 5 MB/s of JSON parsing would make
                                # this Python thread, not the gateway, the source of latency
                                for m in STAMP.finditer(f.payload):
                                    got[i].append(int(m.group(1)))
                                    lat.append(now - float(m.group(2)))
            except Exception as e:  # reported by the main thread
                errors.append("reader: %r" % (e,))
            finally:
                sel.close()

        pub_done = threading.Event()
        pub_err = []

        def publisher():
            r = self.redis.conn()
            pad = "x" * self.PAD
            try:
                t0 = time.time()
                for i in range(total):
                    due = t0 + i / self.RATE
                    left = due - time.time()
                    if left > 0:
                        time.sleep(left)
                    n = r.call("PUBLISH", "push:" + chan,
                               '{"seq":%d,"t":%.6f,"pad":"%s"}' % (i, time.time(), pad))
                    if n != 1:
                        pub_err.append("PUBLISH #%d reached %r gateways" % (i, n))
            except Exception as e:
                pub_err.append(repr(e))
            finally:
                r.close()
                pub_done.set()

        rt = threading.Thread(target=reader, daemon=True)
        pt = threading.Thread(target=publisher, daemon=True)
        rt.start()
        t_pub = time.time()
        pt.start()
        rss_peak = rss0
        all_closed_at = None
        next_metric = 0
        while not pub_done.is_set() or time.time() - t_pub < self.SECONDS:
            rss_peak = max(rss_peak, rss_kib(gw.pid))
            if all_closed_at is None and time.time() >= next_metric:
                next_metric = time.time() + 0.25
                if gw.metric("pushfabric_slow_consumers_closed_total") >= self.N_SLOW:
                    all_closed_at = time.time() - t_pub
            time.sleep(0.05)
            if time.time() - t_pub > self.SECONDS + 20:
                break
        pt.join(30)
        rt.join(15)
        stop.set()
        rss_peak = max(rss_peak, rss_kib(gw.pid))
        closed_total = gw.metric("pushfabric_slow_consumers_closed_total")
        if all_closed_at is None and closed_total >= self.N_SLOW:
            all_closed_at = time.time() - t_pub

        lat.sort()
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else None
        report = ("RSS after connect %d KiB, peak %d KiB (+%d KiB, bound +%d KiB); slow closed %r "
                  "after %s s; fast latency p50 %s p99 %s max %s s; received %r" % (
                      rss0, rss_peak, rss_peak - rss0, self.RSS_MARGIN_KIB, closed_total,
                      None if all_closed_at is None else "%.2f" % all_closed_at,
                      lat and "%.4f" % lat[len(lat) // 2], p99 and "%.4f" % p99,
                      lat and "%.4f" % lat[-1], [len(g) for g in got]))
        print("\n[slow-consumers] " + report, file=sys.stderr)

        self.assertEqual(errors, [], "fast readers were cut off: " + report)
        self.assertEqual(pub_err, [], report)
        for i, g in enumerate(got):
            self.assertEqual(g, list(range(total)), "fast client %d: not every message in order; %s"
                             % (i, report))
        self.assertLess(p99, self.P99_BOUND, report)
        self.assertEqual(closed_total, self.N_SLOW, report)
        self.assertIsNotNone(all_closed_at, report)
        self.assertLess(all_closed_at, self.CLOSE_BOUND, report)
        self.assertLessEqual(rss_peak, rss0 + self.RSS_MARGIN_KIB, report)

        # the gateway side: every never-reading connection is gone and its fd closed
        self.assertEqual(self.wait_metric(gw, "pushfabric_connections", self.N_FAST, timeout=10),
                         self.N_FAST)
        # the client side: every never-reading client sees its TCP connection end (EOF or RST)
        # once it reads what the kernel still buffered; the stream ends with the close frame
        # 1008 "slow consumer" when it made it. All sockets are drained at once.
        t_drain = time.time()
        deadline = t_drain + self.EOF_BOUND
        sel = selectors.DefaultSelector()
        tails = {}
        for c in slow:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
            tails[c] = bytes(c.buf[-32:])
        eof = 0
        while eof < self.N_SLOW and time.time() < deadline:
            for key, _ in sel.select(max(0.0, min(0.5, deadline - time.time()))):
                c = key.data
                try:
                    d = c.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    d = b""
                if d:
                    tails[c] = (tails[c] + d)[-32:]
                else:
                    eof += 1
                    sel.unregister(c.sock)
        sel.close()
        close_frame = b"\x88\x0f\x03\xf0slow consumer"
        with_close = sum(1 for c in slow if tails[c].endswith(close_frame))
        print("[slow-consumers] %d/%d never-reading clients saw TCP EOF/RST (%d ending with the "
              "1008 close frame), all within %.2f s of draining" % (
                  eof, self.N_SLOW, with_close, time.time() - t_drain), file=sys.stderr)
        self.assertEqual(eof, self.N_SLOW, "never-reading clients still open after the bound")
        self.assertLessEqual(open_fds(gw.pid), fds0 + self.N_FAST, "fds of closed clients kept")
        self.assertEqual(self.numsub(chan), 1)
        # the fast clients still work
        self.assertEqual(self.publish(chan, '{"seq":-1,"t":0}'), 1)
        for c in fast:
            c.sock.setblocking(True)
            self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes(chan, [b'{"seq":-1,"t":0}'])))


# ---------------------------------------------------------------------------------------


class SilentPeerTest(FaultTestCase):

    def test_sigstopped_client_is_closed_and_its_subscriptions_freed(self):
        gw = self.start_gateway("--merge-ms", 0, "--ping-interval", 1, "--ping-timeout", 1)
        # a live client that shares one channel with the stopped one
        live = self.ws(gw, "/ws?channels=shared")
        self.assertEqual(live.recv_json(5), {"op": "subscribed", "channels": ["shared"]})
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "slowclient.py"), gw.host,
                              str(gw.port), "alone,shared"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)

        def cleanup():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait(5)
            p.stdout.close()
            p.stderr.close()
        self.addCleanup(cleanup)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        self.assertEqual(self.numsub("alone"), 1)
        self.assertEqual(self.numsub("shared"), 1)
        self.assertEqual(gw.metric("pushfabric_connections"), 2)
        self.assertEqual(gw.metric("pushfabric_subscriptions"), 3)
        # it answers pings while running: still open after 3 s (> interval + timeout)
        t = time.time()
        while time.time() - t < 3.0:
            live.expect_silence(0.2)
        self.assertIsNone(p.poll(), "the client process exited while it answered pings")
        self.assertEqual(gw.metric("pushfabric_connections"), 2)

        os.kill(p.pid, signal.SIGSTOP)
        t_stop = time.time()
        dropped_at = freed_at = None
        while time.time() - t_stop < 8.0 and (dropped_at is None or freed_at is None):
            live.expect_silence(0.05)   # the live client keeps answering pings
            if dropped_at is None and gw.metric("pushfabric_connections") == 1:
                dropped_at = time.time() - t_stop
            if freed_at is None and self.numsub("alone") == 0:
                freed_at = time.time() - t_stop
        print("\n[silent-peer] connection dropped %s s, Redis UNSUBSCRIBE %s s after SIGSTOP "
              "(ping interval 1 + timeout 1)" % (dropped_at, freed_at), file=sys.stderr)
        self.assertIsNotNone(dropped_at, "SIGSTOPped client still connected after 8 s")
        self.assertGreaterEqual(dropped_at, 0.9, "closed before ping-timeout had passed")
        self.assertLessEqual(dropped_at, 4.0)
        self.assertIsNotNone(freed_at, "its only-subscriber channel still subscribed after 8 s")
        self.assertLessEqual(freed_at, 4.0)
        self.assertEqual(gw.metric("pushfabric_subscriptions"), 1)
        self.assertEqual(self.numsub("shared"), 1)     # the live client still holds it
        self.assertEqual(self.publish("alone", "x"), 0)
        self.assertEqual(self.publish("shared", "still"), 1)
        self.assertEqual(live.recv_message(5), (OP_TEXT, batch_bytes("shared", [b'"still"'])))

        os.kill(p.pid, signal.SIGCONT)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            self.fail("the resumed client did not see its connection closed")
        self.assertTrue(out.startswith(b"closed"), out)


# ---------------------------------------------------------------------------------------


class ChurnTest(FaultTestCase):

    ROUNDS = 1000
    CHANNELS = ["churn-%d" % i for i in range(4)]

    def test_last_leaves_and_another_joins_within_a_millisecond_1000_rounds(self):
        gw = self.start_gateway("--merge-ms", 0, "--threads", 2)
        conns, shard_of = [], []
        while len(conns) < 16 or len(set(shard_of)) < 2:
            self.assertLess(len(conns), 40, "every connection landed on one shard: %r" % shard_of)
            before = shard_counts(gw)
            c = self.ws(gw)
            self.ping_ok(c)
            after = shard_counts(gw)
            changed = [k for k in after if after[k] != before.get(k, 0)]
            self.assertEqual(len(changed), 1, (before, after))
            conns.append(c)
            shard_of.append(changed[0])
        r = self.redis.conn()
        self.addCleanup(r.close)
        holder = {}
        for k, ch in enumerate(self.CHANNELS):
            holder[ch] = k
            self.subscribe(conns[k], [ch])
        gaps = []
        cross = 0
        nxt = 0
        for rnd in range(self.ROUNDS):
            ch = self.CHANNELS[rnd % len(self.CHANNELS)]
            a = holder[ch]
            # the joiner: a connection holding no channel right now, on the other shard
            # (every 8th round on the same shard)
            busy = set(holder.values())
            want_other = rnd % 8 != 7
            cands = [i for i in range(len(conns)) if i not in busy
                     and (shard_of[i] != shard_of[a]) == want_other]
            if not cands:
                cands = [i for i in range(len(conns)) if i not in busy]
            b = cands[nxt % len(cands)]
            nxt += 1
            cross += shard_of[b] != shard_of[a]
            ua = wsclient.encode_frame(OP_TEXT, '{"op":"unsubscribe","channels":["%s"]}' % ch)
            sb = wsclient.encode_frame(OP_TEXT, '{"op":"subscribe","channels":["%s"]}' % ch)
            t0 = time.perf_counter()
            conns[a].sock.sendall(ua)
            conns[b].sock.sendall(sb)
            gaps.append(time.perf_counter() - t0)
            self.assertEqual(conns[a].recv_json(5), {"op": "unsubscribed", "channels": [ch]}, rnd)
            self.assertEqual(conns[b].recv_json(5), {"op": "subscribed", "channels": [ch]}, rnd)
            holder[ch] = b
            # the ack means subscribed in Redis: this publish reaches exactly one gateway
            # subscription and exactly the new holder (a stray copy on the old holder would
            # show up as the next message it reads, and fail its next ack check)
            self.assertEqual(r.call("PUBLISH", "push:" + ch, "r%d" % rnd), 1, rnd)
            self.assertEqual(conns[b].recv_message(5),
                             (OP_TEXT, batch_bytes(ch, [b'"r%d"' % rnd])), rnd)
        gaps.sort()
        fast_joins = sum(1 for g in gaps if g < 0.001)
        print("\n[churn] %d rounds (%d across shards), unsubscribe->subscribe send gap median "
              "%.1f us, max %.1f us, %d rounds under 1 ms" % (
                  self.ROUNDS, cross, gaps[len(gaps) // 2] * 1e6, gaps[-1] * 1e6, fast_joins),
              file=sys.stderr)
        # the gap is the test process's own two send() calls, which the gateway does not
        # control: this checks that the scenario was exercised (most joins within 1 ms), with
        # room for preemption of this process on a busy machine (984 of 1000 seen under load)
        self.assertGreaterEqual(fast_joins, self.ROUNDS * 0.9)
        self.assertTrue(gw.alive())
        for ch in self.CHANNELS:
            self.assertEqual(self.numsub(ch), 1, ch)
        for ch in self.CHANNELS:
            self.assertEqual(self.publish(ch, "final"), 1, ch)
            self.assertEqual(conns[holder[ch]].recv_message(5),
                             (OP_TEXT, batch_bytes(ch, [b'"final"'])), ch)
        for c in conns:
            self.assertEqual(c.expect_silence(0.05), [])
        self.assertEqual(gw.metric("pushfabric_subscriptions"), len(self.CHANNELS))

        # every client leaves (half with a close frame, half by dropping TCP)
        for i, c in enumerate(conns):
            if i % 2:
                c.close(1000, wait=2)
            else:
                c.abort()
        self.assertEqual(self.wait_metric(gw, "pushfabric_connections", 0), 0)
        deadline = time.time() + 5
        while self.redis.call("PUBSUB", "CHANNELS") and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.redis.call("PUBSUB", "CHANNELS"), [])
        for ch in self.CHANNELS:
            self.assertEqual(self.numsub(ch), 0, ch)
        self.assertEqual(gw.metric("pushfabric_subscriptions"), 0)
        self.assertTrue(gw.alive())


# ---------------------------------------------------------------------------------------


class RedisFaultTest(FaultTestCase):

    def assert_one_link_exactly(self, channels, timeout=10.0):
        for ch in channels:
            self.assertEqual(self.wait_numsub(ch, 1, timeout=timeout), 1, ch)
        links = gateway_links(self.redis)
        self.assertEqual(len(links), 1, links)
        self.assertEqual(int(links[0]["sub"]), len(channels), links)
        self.assertEqual(int(links[0]["psub"]), 0, links)

    def publish_each_once(self, clients_channels, tag):
        """Publishes one message per channel; every client gets each of its channels' batch
        exactly once (and nothing else)."""
        chans = sorted(set(ch for _, chs in clients_channels for ch in chs))
        r = self.redis.conn()
        try:
            for ch in chans:
                self.assertEqual(r.call("PUBLISH", "push:" + ch, tag), 1, (tag, ch))
        finally:
            r.close()
        for c, chs in clients_channels:
            want = sorted(batch_bytes(ch, [b'"' + tag.encode() + b'"']) for ch in chs)
            self.assertEqual(self.recv_batches(c, len(chs)), want, tag)
        for c, _ in clients_channels:
            self.assertEqual(c.expect_silence(0.3), [], tag)   # nothing twice

    def test_a_redis_killed_and_restarted_twice_20_channels(self):
        gw = self.start_gateway("--merge-ms", 0)
        chans = ["k%02d" % i for i in range(20)]
        c1 = self.ws(gw)
        self.subscribe(c1, chans)
        c2 = self.ws(gw, "/ws?channels=" + ",".join(chans[:10]))
        self.assertEqual(c2.recv_json(5), {"op": "subscribed", "channels": chans[:10]})
        self.assert_one_link_exactly(chans)
        rec0 = gw.metric("pushfabric_redis_reconnects_total")
        for n in range(2):
            idx = len(gw.proc.lines)
            self.redis.stop()
            i, _ = gw.wait_line("redis link down", timeout=10, start=idx)
            self.assertEqual(self.wait_metric(gw, "pushfabric_redis_up", 0), 0)
            time.sleep(0.5)
            self.redis.start()
            gw.wait_line("redis link up after", timeout=15, start=i + 1)
            self.assert_one_link_exactly(chans)
            self.assertEqual(gw.metric("pushfabric_redis_up"), 1)
            self.publish_each_once([(c1, chans), (c2, chans[:10])], "after-restart-%d" % n)
        time.sleep(1.0)
        self.assert_one_link_exactly(chans, timeout=0)
        self.assertEqual(gw.metric("pushfabric_redis_reconnects_total"), rec0 + 2)
        self.publish_each_once([(c1, chans), (c2, chans[:10])], "final")

    def test_b_client_kill_type_pubsub_reconnects_resubscribes_logs_and_counts(self):
        gw = self.start_gateway("--merge-ms", 0)
        chans = ["ck%d" % i for i in range(5)]
        c = self.ws(gw, "/ws?channels=" + ",".join(chans))
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": chans})
        self.assert_one_link_exactly(chans)
        rec0 = gw.metric("pushfabric_redis_reconnects_total")
        down0 = gw.metric("pushfabric_redis_down_seconds_total")
        for n in range(3):
            idx = len(gw.proc.lines)
            self.assertEqual(self.redis.call("CLIENT", "KILL", "TYPE", "pubsub"), 1)
            i, _ = gw.wait_line("redis link down", timeout=10, start=idx)
            _, line = gw.wait_line("redis link up after", timeout=15, start=i + 1)
            gap = float(line.split("redis link up after", 1)[1].split()[0])
            self.assertGreater(gap, 0.0, line)
            self.assert_one_link_exactly(chans)
            self.assertEqual(gw.metric("pushfabric_redis_reconnects_total"), rec0 + n + 1)
            self.assertTrue(c.is_open())
            self.publish_each_once([(c, chans)], "after-kill-%d" % n)
        self.assertGreater(gw.metric("pushfabric_redis_down_seconds_total"), down0)

    def test_c_output_buffer_limit_drop_reconnects_and_counts_the_gap(self):
        self.redis.extra = ["--client-output-buffer-limit", "pubsub 256kb 128kb 1"]
        self.redis.restart()
        gw = self.start_gateway("--merge-ms", 0, "--max-pending-bytes", 512 << 20)
        c = self.ws(gw, "/ws?channels=big,small")
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["big", "small"]})
        self.assert_one_link_exactly(["big", "small"])
        rec0 = gw.metric("pushfabric_redis_reconnects_total")
        down0 = gw.metric("pushfabric_redis_down_seconds_total")
        idx = len(gw.proc.lines)
        pad = "y" * 65536
        os.kill(gw.pid, signal.SIGSTOP)
        try:
            r = self.redis.conn()
            sent = 0
            try:
                t0 = time.time()
                while time.time() - t0 < 20:
                    n = r.call("PUBLISH", "push:big", '{"seq":%d,"pad":"%s"}' % (sent, pad))
                    sent += 1
                    if n == 0:
                        break   # Redis dropped the gateway's subscriber link
                self.assertEqual(n, 0, "Redis never dropped the stopped gateway (%d x 64 KiB)" % sent)
                self.assertEqual(self.numsub("big"), 0)
                self.assertEqual(r.call("PUBLISH", "push:small", "lost-in-gap"), 0)
            finally:
                r.close()
            time.sleep(2.0)  # stopped for a few seconds in all
        finally:
            os.kill(gw.pid, signal.SIGCONT)
        print("\n[output-buffer-limit] Redis dropped the gateway after %d x 64 KiB" % sent,
              file=sys.stderr)
        # the client reads what had made it before the drop: increasing seq, nothing twice
        i, _ = gw.wait_line("redis link down", timeout=15, start=idx)
        _, line = gw.wait_line("redis link up after", timeout=15, start=i + 1)
        self.assert_one_link_exactly(["big", "small"])
        self.assertEqual(gw.metric("pushfabric_redis_reconnects_total"), rec0 + 1)
        self.assertGreater(gw.metric("pushfabric_redis_down_seconds_total"), down0)
        self.assertEqual(self.publish("small", "after-gap"), 1)
        seqs = []
        deadline = time.time() + 20
        while True:
            op, data = c.recv_message(max(0.1, deadline - time.time()))
            if data == batch_bytes("small", [b'"after-gap"']):
                break
            b = json.loads(data)
            self.assertEqual(b["channel"], "big", data[:200])
            seqs += [m["seq"] for m in b["messages"]]
        self.assertEqual(seqs, list(range(len(seqs))), "delivered before the drop: out of order "
                         "or twice")
        self.assertLess(len(seqs), sent)
        print("[output-buffer-limit] %d delivered before the drop; %s" % (len(seqs), line),
              file=sys.stderr)
        self.publish_each_once([(c, ["big", "small"])], "later")

    def expect_refused(self, c, channel, request):
        err = c.recv_json(5)
        self.assertEqual((err.get("op"), err.get("code")), ("error", "subscribe_failed"), err)
        self.assertIn(channel, err.get("message", ""), err)
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": request})
        self.assertEqual(c.expect_silence(0.3), [])

    def test_d_acl_refused_subscribe_is_an_error_others_keep_working(self):
        self.redis.call("ACL", "SETUSER", "gw", "on", ">gwpass", "resetchannels", "&push:ok*",
                        "~*", "+@all")
        url = "redis://gw:gwpass@127.0.0.1:%d" % self.redis.port
        gw = harness.GatewayProc(url, "--merge-ms", 0)
        self._gateways.append(gw)
        a = self.ws(gw, "/ws?channels=ok1")
        self.assertEqual(a.recv_json(5), {"op": "subscribed", "channels": ["ok1"]})
        fail0 = gw.metric("pushfabric_redis_subscribe_failures_total")
        rec0 = gw.metric("pushfabric_redis_reconnects_total")
        # meanwhile ok1 gets a message every 5 ms: a refused SUBSCRIBE must cost it nothing
        stop = threading.Event()
        sent = []

        def publisher():
            r = self.redis.conn()
            try:
                while not stop.is_set():
                    sent.append(r.call("PUBLISH", "push:ok1", str(len(sent))))
                    time.sleep(0.005)
            finally:
                r.close()
        pt = threading.Thread(target=publisher, daemon=True)
        pt.start()
        try:
            time.sleep(0.2)
            # a request naming only a forbidden channel: subscribe_failed naming it, then (as
            # docs/PROTOCOL.md §3 says) the request's ack, listing only what was subscribed
            b = self.ws(gw)
            b.send_json({"op": "subscribe", "channels": ["bad1"]})
            self.expect_refused(b, "bad1", [])
            # a mixed request: the error for the forbidden channel, then the request's ack
            m = self.ws(gw)
            m.send_json({"op": "subscribe", "channels": ["ok2", "bad2"]})
            self.expect_refused(m, "bad2", ["ok2"])
            # two connections asking for the same forbidden channel at once: both told
            d1, d2 = self.ws(gw), self.ws(gw)
            d1.send_json({"op": "subscribe", "channels": ["bad3"]})
            d2.send_json({"op": "subscribe", "channels": ["bad3"]})
            for d in (d1, d2):
                self.expect_refused(d, "bad3", [])
            fails = gw.metric("pushfabric_redis_subscribe_failures_total")
            # NOPERM is final: no retry loop against Redis
            time.sleep(1.0)
        finally:
            stop.set()
            pt.join(5)
        n = len(sent)
        got = []
        while len(got) < n:
            try:
                op, data = a.recv_message(2)
            except socket.timeout:
                break
            got += json.loads(data)["messages"]
        rec = gw.metric("pushfabric_redis_reconnects_total")
        missing = sorted(set(range(n)) - set(got))
        print("\n[acl] subscribe failures counted %d; Redis link reconnects during the refusals "
              "%d; ok1 (published every 5 ms meanwhile): %d of %d delivered, %d PUBLISHes reached "
              "no gateway, missing %s" % (
                  fails - fail0, rec - rec0, len(got), n, sent.count(0), missing), file=sys.stderr)
        self.assertGreaterEqual(fails, fail0 + 3)
        self.assertEqual(gw.metric("pushfabric_redis_subscribe_failures_total"), fails)
        self.assertEqual(sent.count(0), 0, "ok1 was unsubscribed in Redis during the refusals")
        self.assertEqual(got, list(range(n)),
                         "a refused SUBSCRIBE cost another channel's subscriber messages")
        self.assertEqual(rec, rec0, "a refused SUBSCRIBE dropped the Redis link")

        for ch in ("bad1", "bad2", "bad3"):
            self.assertEqual(self.numsub(ch), 0, ch)
            self.assertEqual(self.publish(ch, "nobody"), 0, ch)
        for c in (a, b, m, d1, d2):
            self.ping_ok(c)
        # allowed channels: exactly one subscription each, delivered exactly once
        f = self.ws(gw)
        self.subscribe(f, ["ok3", "ok1"])
        for ch in ("ok1", "ok2", "ok3"):
            self.assertEqual(self.numsub(ch), 1, ch)
        self.publish_each_once([(a, ["ok1"]), (m, ["ok2"]), (f, ["ok1", "ok3"])], "allowed")
        self.assertEqual(gateway_links(self.redis)[0]["user"], "gw")
        self.assertEqual(len(gateway_links(self.redis)), 1)
        self.assertTrue(gw.alive())

    def test_e_redis_down_at_start_subscribers_acked_once_up_then_receive(self):
        port = self.redis.port
        self.redis.stop()
        gw = self.start_gateway("--merge-ms", 0, wait_redis=False)
        c1 = self.ws(gw, "/ws?channels=e1")
        c2 = self.ws(gw)
        c2.send_json({"op": "subscribe", "channels": ["e2", "e3"]})
        c3 = self.ws(gw)
        c3.send_json({"op": "subscribe", "channels": ["e1"]})
        # no ack (and no error) while Redis is down
        for c in (c1, c2, c3):
            self.assertEqual(c.expect_silence(0.7), [])
        self.assertEqual(gw.metric("pushfabric_redis_up"), 0)
        self.assertEqual(gw.proc.count_lines("redis link up"), 0)
        self.redis.start()
        self.assertEqual(self.redis.port, port)
        t_up = time.time()
        self.assertEqual(c1.recv_json(15), {"op": "subscribed", "channels": ["e1"]})
        self.assertEqual(c2.recv_json(15), {"op": "subscribed", "channels": ["e2", "e3"]})
        self.assertEqual(c3.recv_json(15), {"op": "subscribed", "channels": ["e1"]})
        print("\n[redis-down-at-start] acks %.2f s after Redis came up" % (time.time() - t_up),
              file=sys.stderr)
        gw.wait_line("redis link up", timeout=1)
        self.assert_one_link_exactly(["e1", "e2", "e3"], timeout=0)
        self.publish_each_once([(c1, ["e1"]), (c2, ["e2", "e3"]), (c3, ["e1"])], "up")


# ---------------------------------------------------------------------------------------


class FdExhaustionTest(FaultTestCase):

    NOFILE = 128
    EXTRA = 200

    def test_fd_limit_no_crash_no_spin_subscribers_keep_receiving_service_comes_back(self):
        gw = WrappedGateway(["prlimit", "--nofile=%d:%d" % (self.NOFILE, self.NOFILE)],
                            self.redis, "--merge-ms", 0, "--threads", 2)
        self._gateways.append(gw)
        with open("/proc/%d/limits" % gw.pid) as f:
            self.assertIn("Max open files            %d                  %d" % (
                self.NOFILE, self.NOFILE), f.read())
        s = self.ws(gw, "/ws?channels=fd")
        self.assertEqual(s.recv_json(5), {"op": "subscribed", "channels": ["fd"]})
        fds0 = open_fds(gw.pid)

        extras = []
        req = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        for i in range(self.EXTRA):
            x = socket.socket()
            extras.append(x)
            x.settimeout(3)
            x.connect((gw.host, gw.port))   # completes in the kernel backlog even if not accepted
            x.sendall(req.encode())
        self.addCleanup(lambda: [x.close() for x in extras])
        time.sleep(1.0)
        upgraded = 0
        for x in extras:
            x.setblocking(False)
            try:
                d = x.recv(4096)
                upgraded += d.startswith(b"HTTP/1.1 101")
            except BlockingIOError:
                pass
            except OSError:
                pass
        fds_sat = open_fds(gw.pid)
        self.assertTrue(gw.alive())
        # saturated: CPU use over 3 s while the backlog holds connections it cannot accept;
        # the subscriber keeps receiving meanwhile
        cpu0 = cpu_seconds(gw.pid)
        t0 = time.time()
        k = 0
        while time.time() - t0 < 3.0:
            self.assertEqual(self.publish("fd", "m%d" % k), 1)
            self.assertEqual(s.recv_message(5), (OP_TEXT, batch_bytes("fd", [b'"m%d"' % k])))
            k += 1
            time.sleep(0.1)
        cpu = cpu_seconds(gw.pid) - cpu0
        print("\n[fd-exhaustion] nofile %d: %d fds before, %d saturated, %d of %d extra "
              "connections upgraded; gateway CPU %.2f s over 3 s; %d messages delivered" % (
                  self.NOFILE, fds0, fds_sat, upgraded, self.EXTRA, cpu, k), file=sys.stderr)
        self.assertLess(cpu, 0.5, "the gateway spins while out of file descriptors")
        self.assertTrue(gw.alive())
        self.assertLess(upgraded, self.EXTRA)

        for x in extras:
            x.close()
        extras.clear()
        # service comes back by itself: a new connection upgrades, subscribes, receives
        deadline = time.time() + 15
        while True:
            try:
                c = self.ws(gw, "/ws?channels=fd2", timeout=2)
                self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["fd2"]})
                break
            except (OSError, wsclient.WSError):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        t_back = time.time() - (deadline - 15)
        self.assertEqual(self.publish("fd2", "back"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("fd2", [b'"back"'])))
        self.assertEqual(self.publish("fd", "still"), 1)
        self.assertEqual(s.recv_message(5), (OP_TEXT, batch_bytes("fd", [b'"still"'])))
        self.assertEqual(self.wait_metric(gw, "pushfabric_connections", 2, timeout=10), 2)
        deadline = time.time() + 10
        while open_fds(gw.pid) > fds0 + 2 and time.time() < deadline:
            time.sleep(0.1)
        print("[fd-exhaustion] new connection accepted %.2f s after closing the extras; fds "
              "now %d" % (t_back, open_fds(gw.pid)), file=sys.stderr)
        self.assertLessEqual(open_fds(gw.pid), fds0 + 2, "fd leak after the exhaustion")


# ---------------------------------------------------------------------------------------


class GracefulShutdownTest(FaultTestCase):

    def test_sigterm_flushes_the_window_closes_1001_and_exits_0_within_drain_ms(self):
        drain_ms = 3000
        gw = self.start_gateway("--merge-ms", 2000, "--drain-ms", drain_ms, "--threads", 2)
        clients = []
        for i in range(10):
            c = self.ws(gw, "/ws?channels=bye" + (",bye2" if i % 2 else ""))
            self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": (
                ["bye", "bye2"] if i % 2 else ["bye"])})
            clients.append(c)
        self.assertEqual(self.publish_many("bye", [b"one", b'{"n":2}', b"3"]), [1, 1, 1])
        self.assertEqual(self.publish("bye2", "other"), 1)
        time.sleep(0.2)   # the gateway holds them in the open 2 s window
        gw.stopped_by_test = True
        t0 = time.time()
        os.kill(gw.pid, signal.SIGTERM)
        want_bye = batch_bytes("bye", [b'"one"', b'{"n":2}', b"3"])
        want_bye2 = batch_bytes("bye2", [b'"other"'])
        for i, c in enumerate(clients):
            got = []
            while True:
                f = c.recv_frame(5)
                if f.opcode == OP_CLOSE:
                    break
                if f.opcode == OP_TEXT:
                    got.append(f.payload)
            self.assertEqual(sorted(got), sorted([want_bye] + ([want_bye2] if i % 2 else [])), i)
            self.assertEqual(f.close_info(), (1001, b"server shutting down"), i)
            self.assertEqual(c.wait_closed(3)[2], True, i)   # then TCP is closed
        try:
            rc = gw.proc.p.wait(drain_ms / 1000.0)
        except subprocess.TimeoutExpired:
            self.fail("still running %d ms after SIGTERM" % drain_ms)
        elapsed = time.time() - t0
        gw.stop()   # reaped already: closes its pipes
        print("\n[shutdown] batches + 1001 to 10 clients, exit %r after %.3f s (drain-ms %d)" % (
            rc, elapsed, drain_ms), file=sys.stderr)
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, drain_ms / 1000.0)
        self.assertLess(elapsed, 1.9, "batches were not flushed at SIGTERM but at window end")

    def test_sigterm_with_a_client_that_never_reads_exits_0_in_time(self):
        gw = self.start_gateway("--merge-ms", 0, "--drain-ms", 500,
                                "--max-pending-bytes", 64 << 20)
        stuck = self.ws(gw, "/ws?channels=stuck", rcvbuf=4096)
        self.assertEqual(stuck.recv_json(5), {"op": "subscribed", "channels": ["stuck"]})
        ok = self.ws(gw, "/ws?channels=other")
        self.assertEqual(ok.recv_json(5), {"op": "subscribed", "channels": ["other"]})
        pad = "z" * 16384
        self.assertEqual(self.publish_many("stuck", [pad] * 200), [1] * 200)   # ~3 MB pending
        time.sleep(0.5)
        gw.stopped_by_test = True
        t0 = time.time()
        os.kill(gw.pid, signal.SIGTERM)
        time.sleep(0.1)
        # while draining, no new WebSocket is accepted
        try:
            c, resp = wsclient.WSClient.try_connect(gw.host, gw.port, "/ws", timeout=1)
            late = c is not None
            if c:
                c.abort()
        except (OSError, wsclient.WSError):
            late = False
        f = ok.recv_frame(3)
        self.assertEqual((f.opcode, f.close_info()), (OP_CLOSE, (1001, b"server shutting down")))
        try:
            rc = gw.proc.p.wait(1.5 - (time.time() - t0))
        except (subprocess.TimeoutExpired, ValueError):
            self.fail("push-gateway still running 1.5 s after SIGTERM with --drain-ms 500")
        elapsed = time.time() - t0
        gw.stop()
        print("\n[shutdown-stuck] exit %r after %.3f s (drain-ms 500); upgrade during drain: %r" % (
            rc, elapsed, late), file=sys.stderr)
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 1.5)
        self.assertFalse(late, "a new WebSocket was upgraded while draining")


if __name__ == "__main__":
    unittest.main()


# ---------------------------------------------------------------------------------------


def is_asan_build(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


class MemoryCapTest(FaultTestCase):
    """The gateway under a hard memory cap, filled by never-reading clients holding 1 MB frames:
    no crash, no spin, the reading subscriber keeps receiving, and once memory is free again
    everything works as before. The cap is RLIMIT_AS (prlimit) for a plain build; an ASan build
    reserves terabytes of shadow address space, so there the cap is ASan's own RSS limit with
    malloc returning NULL past it (soft_rss_limit_mb + allocator_may_return_null)."""

    N_SLOW = 20
    MSG = 1 << 20
    COUNT = 400  # 400 MB of frames held by the slow readers: well past either cap

    def start_capped(self):
        args = ["--merge-ms", 0, "--threads", 2, "--max-pending-bytes", 1 << 30]
        if is_asan_build(harness.GATEWAY):
            env = dict(os.environ)
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                                   ":allocator_may_return_null=1:soft_rss_limit_mb=300").lstrip(":")
            os.environ.update(env)  # WrappedGateway inherits the environment
            self.addCleanup(os.environ.__setitem__, "ASAN_OPTIONS",
                            env["ASAN_OPTIONS"].replace(
                                ":allocator_may_return_null=1:soft_rss_limit_mb=300", ""))
            return WrappedGateway([], self.redis, *args), "ASan soft RSS limit 300 MB"
        return (WrappedGateway(["prlimit", "--as=%d" % (400 << 20)], self.redis, *args),
                "RLIMIT_AS 400 MiB")

    def test_memory_cap_no_crash_no_spin_service_comes_back(self):
        gw, cap = self.start_capped()
        self._gateways.append(gw)
        fast = self.ws(gw, "/ws?channels=mem")
        self.assertEqual(fast.recv_json(5), {"op": "subscribed", "channels": ["mem"]})
        slow = []
        for i in range(self.N_SLOW):
            c = self.ws(gw, "/ws?channels=mem", rcvbuf=4096)
            self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["mem"]})
            slow.append(c)
        got = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    op, data = fast.recv_message(0.5)
                except socket.timeout:
                    continue
                except (OSError, wsclient.WSError) as e:
                    got.append(("error", repr(e)))
                    return
                for m in STAMP_SEQ.finditer(data):
                    got.append(int(m.group(1)))

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        r = self.redis.conn()
        pad = "x" * self.MSG
        try:
            for i in range(self.COUNT):
                r.call("PUBLISH", "push:mem", '{"seq":%d,"p":"%s"}' % (i, pad))
        finally:
            r.close()
        time.sleep(1.0)
        self.assertTrue(gw.alive(), "gateway died under the memory cap: " + "\n".join(
            gw.proc.lines[-20:]))
        cpu0 = cpu_seconds(gw.pid)
        time.sleep(2.0)
        cpu = cpu_seconds(gw.pid) - cpu0
        during = [g for g in got if isinstance(g, int)]
        print("\n[memory-cap] %s: fast reader got %d of %d 1 MB messages while %d readers held "
              "frames; gateway CPU %.2f s over 2 s idle; log: %s" % (
                  cap, len(during), self.COUNT, self.N_SLOW, cpu,
                  [l[25:120] for l in gw.proc.lines if "memory" in l][:3]), file=sys.stderr)
        self.assertLess(cpu, 0.5, "the gateway spins under the memory cap")
        self.assertGreater(len(during), 0, "the reading subscriber got nothing under the cap")
        self.assertEqual(during, sorted(set(during)), "duplicates or reordering under the cap")
        # free the memory: the never-reading clients go away, and with them their frames
        for c in slow:
            c.abort()
        self.assertEqual(self.wait_metric(gw, "pushfabric_connections", 1, timeout=15), 1)
        stop.set()
        rt.join(5)
        # service is back: the same subscriber and a new one receive every message, in order
        new = self.ws(gw, "/ws?channels=mem")
        self.assertEqual(new.recv_json(5), {"op": "subscribed", "channels": ["mem"]})
        drained = 0
        while True:  # what the fast reader had not read yet
            try:
                fast.recv_message(1.0)
                drained += 1
            except socket.timeout:
                break
        for k in range(10):
            self.assertEqual(self.publish("mem", '{"seq":%d}' % (1000 + k)), 1)
            want = (OP_TEXT, batch_bytes("mem", [b'{"seq":%d}' % (1000 + k)]))
            self.assertEqual(fast.recv_message(5), want)
            self.assertEqual(new.recv_message(5), want)


STAMP_SEQ = re.compile(rb'"seq":(\d+)')
