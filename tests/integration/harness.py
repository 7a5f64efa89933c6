"""Process harness for integration tests: real redis-server, real gateway/publisher processes.

Every process started here is tracked by PID and killed in stop(); nothing is left behind.
Only loopback addresses are used. Python stdlib only.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BUILD_DIR = os.environ.get("PF_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
GATEWAY = os.path.join(BUILD_DIR, "gateway", "push-gateway")
PUBLISH = os.path.join(BUILD_DIR, "publisher-cli", "push-publish")


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listens on %s:%d after %.1fs" % (host, port, timeout))


class Proc:
    """A child process whose stderr is collected in the background; stop() kills it by PID."""

    def __init__(self, argv, env=None, stdin=None):
        self.argv = argv
        self.lines = []
        self._cv = threading.Condition()
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self._t = threading.Thread(target=self._pump, args=(self.p.stderr,), daemon=True)
        self._t.start()
        self.stdout_lines = []
        self._t2 = threading.Thread(target=self._pump_out, daemon=True)
        self._t2.start()

    @property
    def pid(self):
        return self.p.pid

    def _pump(self, f):
        for raw in iter(f.readline, b""):
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()

    def _pump_out(self):
        for raw in iter(self.p.stdout.readline, b""):
            with self._cv:
                self.stdout_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, needle, timeout=10.0, start=0):
        """Waits for a stderr line containing needle; returns (index, line)."""
        deadline = time.time() + timeout
        with self._cv:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i, self.lines[i]
                left = deadline - time.time()
                if left <= 0 or self.p.poll() is not None and not self._t.is_alive():
                    raise TimeoutError("no line with %r from %s; stderr so far:\n%s" % (
                        needle, self.argv[0], "\n".join(self.lines[-40:])))
                self._cv.wait(min(left, 0.1))

    def count_lines(self, needle):
        with self._cv:
            return sum(1 for l in self.lines if needle in l)

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the process by PID; returns its exit code."""
        if self.alive():
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self._t.join(2)
        self._t2.join(2)
        for f in (self.p.stdout, self.p.stderr):
            if f:
                f.close()
        return self.p.returncode


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespConn:
    """A minimal blocking RESP2 client, enough for PUBLISH, PUBSUB and SUBSCRIBE in tests."""

    def __init__(self, port, host="127.0.0.1", unix=None, timeout=5.0):
        if unix:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(timeout)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("redis closed the connection")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("bad RESP line %r" % line)

    def send(self, *args):
        self.s.sendall(resp_encode(*args))

    def call(self, *args):
        self.send(*args)
        r = self.read()
        if isinstance(r, RuntimeError):
            raise r
        return r


class RedisServer:
    """A private redis-server on a free loopback port (or a unix socket), in a temp dir."""

    def __init__(self, port=None, password=None, unixsocket=False, extra=()):
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="pf-redis-")
        self.unix = os.path.join(self.dir, "redis.sock") if unixsocket else None
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        argv = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.unix:
            argv += ["--unixsocket", self.unix, "--unixsocketperm", "700"]
        argv += self.extra
        self.proc = Proc(argv)
        deadline = time.time() + 10
        while True:
            try:
                c = self.conn()
                c.call("PING")
                c.close()
                return
            except (OSError, ConnectionError, RuntimeError):
                if time.time() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self):
        if self.proc:
            self.proc.stop(signal.SIGKILL)
            self.proc = None

    def restart(self, down_seconds=0.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def conn(self):
        c = RespConn(self.port)
        if self.password:
            c.call("AUTH", self.password)
        return c

    def call(self, *args):
        c = self.conn()
        try:
            return c.call(*args)
        finally:
            c.close()

    def numsub(self, channel):
        r = self.call("PUBSUB", "NUMSUB", channel)
        return int(r[1])


# ---------------------------------------------------------------------------------------
# Gateway + WebSocket test support (used by test_gateway_*.py; needs wsclient.py)


def parse_metrics(text):
    """Prometheus text exposition -> {'name' or 'name{labels}': float}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 2)
        # "name{l="v"} value [timestamp]"
        if len(parts) == 3 and not parts[1].replace(".", "").replace("-", "").replace(
                "e", "").replace("+", "").isdigit():
            parts = [" ".join(parts[:2]), parts[2]]
        elif len(parts) == 3:
            parts = [parts[0], parts[1]]
        try:
            out[parts[0]] = float(parts[1])
        except (ValueError, IndexError):
            pass
    return out


class GatewayProc:
    """One push-gateway on a free loopback port, pointed at a RedisServer (or a URL)."""

    def __init__(self, redis, *args, host="127.0.0.1", port=None, wait_redis=True,
                 timeout=15.0):
        if not os.path.exists(GATEWAY):
            raise AssertionError("gateway binary not built: %s" % GATEWAY)
        self.host = host
        self.port = port or free_port(host)
        url = redis if isinstance(redis, str) else redis.url
        self.argv = [GATEWAY, "--listen", "%s:%d" % (host, self.port), "--redis", url] + [
            str(a) for a in args]
        self.proc = Proc(self.argv)
        try:
            self.proc.wait_line("listening on", timeout)
            if wait_redis:
                self.proc.wait_line("redis link up", timeout)
        except BaseException:
            self.proc.stop(signal.SIGKILL)  # never leave a half-started gateway behind
            raise

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.alive()

    def wait_line(self, needle, timeout=10.0, start=0):
        return self.proc.wait_line(needle, timeout, start)

    def http_get(self, path, timeout=5.0):
        import wsclient
        return wsclient.http_get(self.host, self.port, path, timeout=timeout)

    def metrics(self):
        r = self.http_get("/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics -> %d %r" % (r.status, r.body[:200]))
        return parse_metrics(r.body.decode("utf-8", "replace"))

    def metric(self, name):
        """The value of an unlabeled metric, or the sum of its labeled series."""
        m = self.metrics()
        if name in m:
            return m[name]
        series = [v for k, v in m.items() if k.startswith(name + "{")]
        if not series:
            raise AssertionError("metric %s missing from /metrics: %r" % (name, sorted(m)))
        return sum(series)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        rc = self.proc.stop(sig, timeout)
        self.proc._t2.join(2)
        for f in (self.proc.p.stdout, self.proc.p.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        return rc


import unittest as _unittest  # noqa: E402  (appended section)


class GatewayTestCase(_unittest.TestCase):
    """Base for gateway tests: a private Redis per test, gateways and WebSocket clients that
    are all closed/killed (by PID) in tearDown."""

    PREFIX = "push:"

    def setUp(self):
        self._gateways = []
        self._clients = []
        self._pools = []
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)

    def tearDown(self):
        for p in self._pools:
            p.close_all()
        for c in self._clients:
            c.abort()
        problems = []
        for g in self._gateways:
            before = len(problems)
            if not g.alive() and not getattr(g, "stopped_by_test", False):
                problems.append("push-gateway (pid %d) died during the test, exit %r" % (
                    g.pid, g.proc.p.returncode))
            if g.alive():
                g.stop(signal.SIGTERM, timeout=5.0)  # lets ASan/LSan builds report at exit
            bad = [l for l in g.proc.lines if "ERROR: AddressSanitizer" in l
                   or "ERROR: LeakSanitizer" in l or "runtime error:" in l]
            if bad:
                problems.append("sanitizer report from push-gateway (pid %d): %s" % (g.pid, bad[:3]))
            if len(problems) > before:
                problems.append("its stderr (last 30 lines):\n" + "\n".join(g.proc.lines[-30:]))
        if problems:
            self.fail("\n".join(problems))

    def start_gateway(self, *args, **kw):
        g = GatewayProc(self.redis, *args, **kw)
        self._gateways.append(g)
        return g

    def ws(self, gw, path="/ws", **kw):
        import wsclient
        c = wsclient.WSClient.connect(gw.host, gw.port, path, **kw)
        self._clients.append(c)
        return c

    def pool(self):
        import wsclient
        p = wsclient.WSPool()
        self._pools.append(p)
        return p

    def publish(self, channel, payload):
        """PUBLISH PREFIX+channel payload; returns the receiver count."""
        return self.redis.call("PUBLISH", self.PREFIX + channel, payload)

    def publish_many(self, channel, payloads):
        """Pipelines the PUBLISHes on one connection (all within a few ms); returns counts."""
        c = self.redis.conn()
        try:
            c.s.sendall(b"".join(resp_encode("PUBLISH", self.PREFIX + channel, p) for p in payloads))
            return [c.read() for _ in payloads]
        finally:
            c.close()

    def numsub(self, channel):
        return self.redis.numsub(self.PREFIX + channel)

    def wait_numsub(self, channel, want, timeout=5.0):
        """Polls PUBSUB NUMSUB until it equals want (bounded); returns the last value."""
        deadline = time.time() + timeout
        while True:
            n = self.numsub(channel)
            if n == want or time.time() > deadline:
                return n
            time.sleep(0.02)

    def expect_json(self, c, want, timeout=5.0):
        got = c.recv_json(timeout)
        self.assertEqual(got, want)
        return got

    def subscribe(self, c, channels, timeout=5.0):
        """Sends a subscribe op; the next message must be exactly its ack."""
        c.send_json({"op": "subscribe", "channels": list(channels)})
        return self.expect_json(c, {"op": "subscribed", "channels": list(channels)}, timeout)

    def unsubscribe(self, c, channels, timeout=5.0):
        c.send_json({"op": "unsubscribe", "channels": list(channels)})
        return self.expect_json(c, {"op": "unsubscribed", "channels": list(channels)}, timeout)


class DelayProxy:
    """A TCP proxy on a free loopback port that forwards to target_port, holding every chunk
    for `up` seconds client→server and `down` seconds server→client (order kept). Used to
    put latency on the gateway↔Redis link, so an ack sent before Redis confirmed is caught.
    cut() drops every open connection (a link failure without killing Redis)."""

    def __init__(self, target_port, up=0.0, down=0.0, target_host="127.0.0.1"):
        import queue as _queue
        self._queue = _queue
        self.target = (target_host, target_port)
        self.up, self.down = up, down
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, s]
            for a, b, d in ((c, s, lambda: self.up), (s, c, lambda: self.down)):
                q = self._queue.Queue()
                threading.Thread(target=self._read, args=(a, q, d), daemon=True).start()
                threading.Thread(target=self._write, args=(b, q), daemon=True).start()

    def _read(self, a, q, delay):
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                data = b""
            q.put((time.time() + delay(), data))
            if not data:
                return

    def _write(self, b, q):
        while True:
            due, data = q.get()
            left = due - time.time()
            if left > 0:
                time.sleep(left)
            if not data:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                b.sendall(data)
            except OSError:
                return

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.closed = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        self.cut()
