"""The local cluster (scripts/cluster-local.sh): Redis, three gateways, HAProxy and the HTTP
publisher on loopback, driven end to end through HAProxy.

Needs the Debian haproxy package: without it these tests FAIL (they do not skip), since the
cluster is part of what CI must cover. The script is started on free ports with --no-build
(the binaries come from PF_BUILD_DIR) and stopped by its PID; every process it started is
checked gone afterwards.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
import wsclient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "cluster-local.sh")
HOST = "127.0.0.1"
N_GATEWAYS = 3
N_CLIENTS = 30
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def find_haproxy():
    for cand in (os.environ.get("HAPROXY"), shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def pid_alive(pid):
    """True if pid is a live process (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def free_ports(n):
    """n distinct free loopback ports."""
    ports = set()
    while len(ports) < n:
        ports.add(harness.free_port(HOST))
    return sorted(ports)


class ClusterScript:
    """scripts/cluster-local.sh on free ports in a temporary run directory."""

    def __init__(self, gateways=N_GATEWAYS, extra_env=None, args=("--no-build",)):
        ports = free_ports(4 + gateways)
        self.lb_port, self.stats_port, self.pub_port, self.redis_port = ports[:4]
        self.gw_ports = ports[4:]
        self.run_dir = tempfile.mkdtemp(prefix="pf-cluster-")
        # Start from a clean slate: no PUSH_* setting of the caller's shell may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSH_")}
        env.update({
            "PF_BUILD_DIR": os.path.abspath(harness.BUILD_DIR),
            "CLUSTER_RUN_DIR": self.run_dir,
            "CLUSTER_LB_PORT": str(self.lb_port),
            "CLUSTER_STATS_PORT": str(self.stats_port),
            "CLUSTER_PUBLISHER_PORT": str(self.pub_port),
            "CLUSTER_REDIS_PORT": str(self.redis_port),
            "CLUSTER_GATEWAY_PORTS": ",".join(map(str, self.gw_ports)),
        })
        env.update(extra_env or {})
        self.env = env
        self.proc = harness.Proc(["bash", SCRIPT] + list(args), env=env)
        self.info = {}
        self.pids = {}

    def wait_ready(self, timeout=90.0):
        self.proc.wait_line("cluster-local: ready", timeout)
        with open(os.path.join(self.run_dir, "cluster.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                self.info[k] = v
        self.pids = {k[:-4].lower(): int(v) for k, v in self.info.items() if k.endswith("_PID")}

    def gateway_pid(self, i):
        return self.pids["gateway%d" % i]

    def stop(self, timeout=30.0):
        """SIGTERM to the script (by PID); it stops what it started. Returns its exit code."""
        rc = self.proc.stop(signal.SIGTERM, timeout)
        # Only if the script itself had to be killed: its children by PID, never by name.
        for name, pid in self.pids.items():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        return rc

    def cleanup(self):
        if self.proc.alive():
            self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log(self, name):
        try:
            with open(os.path.join(self.run_dir, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self):
        return "\n".join(self.proc.lines[-40:])


class ClusterTest(unittest.TestCase):

    def setUp(self):
        if not find_haproxy():
            self.fail("haproxy is not installed: the local cluster needs Debian's haproxy package "
                      "(apt-get install haproxy; scripts/install-deps.sh installs it)")
        for b in (harness.GATEWAY, harness.PUBLISH):
            if not os.access(b, os.X_OK):
                self.fail("%s is not built (set PF_BUILD_DIR to a build directory)" % b)

    # -- helpers -------------------------------------------------------------------------

    def start_cluster(self, **kw):
        c = ClusterScript(**kw)
        self.addCleanup(c.cleanup)
        try:
            c.wait_ready()
        except TimeoutError as e:
            self.fail("cluster-local.sh did not get ready: %s\nscript stderr:\n%s" % (e, c.stderr()))
        self.assertEqual(sorted(c.pids), ["gateway1", "gateway2", "gateway3", "haproxy",
                                          "publisher", "redis"])
        return c

    def connections(self, port):
        r = wsclient.http_get(HOST, port, "/metrics")
        self.assertEqual(r.status, 200, r)
        m = harness.parse_metrics(r.body.decode())
        series = [v for k, v in m.items() if k.startswith("pushfabric_connections{")]
        self.assertTrue(series, "no pushfabric_connections series on port %d" % port)
        return int(sum(series))

    def haproxy_status(self, c):
        """{server name: status} from HAProxy's CSV status page."""
        r = wsclient.http_get(HOST, c.stats_port, "/;csv")
        self.assertEqual(r.status, 200, r)
        out = {}
        for line in r.body.decode().splitlines():
            f = line.split(",")
            if len(f) > 17 and f[0] == "gateways" and f[1].startswith("gateway"):
                out[f[1]] = f[17]
        return out

    def wait_haproxy_status(self, c, want, timeout=15.0):
        deadline = time.time() + timeout
        while True:
            got = self.haproxy_status(c)
            if got == want or time.time() > deadline:
                self.assertEqual(got, want, "HAProxy server states")
                return
            time.sleep(0.1)

    def redis_call(self, c, *args):
        conn = harness.RespConn(c.redis_port)
        try:
            return conn.call(*args)
        finally:
            conn.close()

    def connect_clients(self, pool, c, n, channel):
        """n WebSocket clients through HAProxy, each subscribed to channel (ack checked)."""
        idx = pool.connect(n, HOST, c.lb_port, "/ws?channels=" + channel)
        self.assertTrue(pool.wait_each(1, timeout=10.0, idx=idx), "not every client got its ack")
        ack = {"op": "subscribed", "channels": [channel]}
        for i in idx:
            self.assertEqual(pool.pop_json(i), ack)
        return idx

    def expect_batch(self, pool, idx, want, timeout=10.0):
        """Each client in idx receives exactly one message, the batch `want` (exact bytes)."""
        ok = pool.wait_each(1, timeout=timeout, idx=idx)
        missing = [i for i in idx if not pool.messages[i]]
        self.assertTrue(ok, "%d of %d clients got no batch" % (len(missing), len(idx)))
        pool.wait_until(lambda p: False, timeout=0.3)  # anything extra arrives now
        for i in idx:
            self.assertEqual(pool.messages[i], [(wsclient.OP_TEXT, want)], "client %d" % i)
            pool.messages[i] = []

    def assert_all_gone(self, c):
        left = {n: p for n, p in c.pids.items() if pid_alive(p)}
        self.assertEqual(left, {}, "processes left running after the script stopped")

    # -- tests ---------------------------------------------------------------------------

    def test_clients_spread_over_gateways_receive_publish_and_fail_over(self):
        # A short merge window keeps the test quick (and shows PUSH_* reaching the gateways).
        c = self.start_cluster(extra_env={"PUSH_MERGE_MS": "100"})
        pool = wsclient.WSPool()
        self.addCleanup(pool.close_all)
        channel = "cluster-%d" % os.getpid()

        # 30 clients through HAProxy: leastconn spreads them over all three gateways.
        idx = self.connect_clients(pool, c, N_CLIENTS, channel)
        per_gw = [self.connections(p) for p in c.gw_ports]
        self.assertEqual(sum(per_gw), N_CLIENTS, "connections per gateway: %r" % per_gw)
        for i, n in enumerate(per_gw):
            self.assertGreater(n, 0, "gateway%d holds no client: %r" % (i + 1, per_gw))
        # One Redis subscription per gateway, however many clients each holds.
        self.assertEqual(self.redis_call(c, "PUBSUB", "NUMSUB", "push:" + channel),
                         [("push:" + channel).encode(), N_GATEWAYS])

        # One publish through the HTTP publisher: every client gets exactly that batch.
        payload = '{"n":1,"text":"h\u00e9llo cluster"}'.encode()
        r = wsclient.http_request(HOST, c.pub_port, "/publish/" + channel, "POST", body=payload)
        self.assertEqual((r.status, json.loads(r.body)), (200, {"receivers": N_GATEWAYS}))
        batch = b'{"channel":"' + channel.encode() + b'","messages":[' + payload + b']}'
        self.expect_batch(pool, idx, batch)

        # Stop gateway2 (SIGTERM): its clients, and only they, are closed with 1001.
        victim = 2
        on_victim = per_gw[victim - 1]
        os.kill(c.gateway_pid(victim), signal.SIGTERM)
        pool.wait_until(lambda p: sum(1 for x in p.closed if x) >= on_victim, timeout=10.0)
        pool.wait_until(lambda p: False, timeout=0.3)  # no other client may close
        closed = [i for i in idx if pool.closed[i]]
        self.assertEqual(len(closed), on_victim, "clients closed after gateway%d stopped" % victim)
        for i in closed:
            self.assertEqual(pool.closed[i].code, 1001, "client %d: %r" % (i, pool.closed[i]))
        survivors = [i for i in idx if not pool.closed[i]]

        # The closed clients reconnect through HAProxy at once, as a real client would, before
        # the health check has noticed anything: HAProxy retries a handshake the stopped
        # gateway refuses on another one (retry-on + redispatch), so every reconnect lands on
        # the gateways left.
        back = self.connect_clients(pool, c, on_victim, channel)

        # The script keeps the rest running; HAProxy's /readyz check marks gateway2 DOWN.
        c.proc.wait_line("gateway%d (pid %d) exited" % (victim, c.gateway_pid(victim)), 10.0)
        self.assertTrue(c.proc.alive(), "the script stopped after one gateway exited")
        self.assertFalse(pid_alive(c.gateway_pid(victim)))
        want = {"gateway%d" % (k + 1): "UP" for k in range(N_GATEWAYS)}
        want["gateway%d" % victim] = "DOWN"
        self.wait_haproxy_status(c, want)
        per_gw = [self.connections(p) for k, p in enumerate(c.gw_ports) if k + 1 != victim]
        self.assertEqual(sum(per_gw), N_CLIENTS, "connections on the remaining gateways")
        self.assertEqual(self.redis_call(c, "PUBSUB", "NUMSUB", "push:" + channel),
                         [("push:" + channel).encode(), N_GATEWAYS - 1])

        # The next publish (straight to Redis this time) reaches all 30 again, once each.
        payload2 = b'[2,"after failover"]'
        self.assertEqual(self.redis_call(c, "PUBLISH", "push:" + channel, payload2),
                         N_GATEWAYS - 1)
        batch2 = b'{"channel":"' + channel.encode() + b'","messages":[' + payload2 + b']}'
        self.expect_batch(pool, survivors + back, batch2)

        # Stop the script by PID: it stops exactly what it started, and nothing is left.
        pool.close_all()
        rc = c.stop()
        self.assertEqual(rc, 143, "script exit status after SIGTERM\n" + c.stderr())
        self.assert_all_gone(c)
        self.assertTrue(any("cluster-local: stopped" in l for l in c.proc.lines), c.stderr())
        for k in range(1, N_GATEWAYS + 1):
            log = c.log("gateway%d" % k)
            self.assertIn("stopped", log, "gateway%d did not exit cleanly:\n%s" % (k, log[-2000:]))
            bad = [l for l in log.splitlines() if any(m in l for m in SANITIZER_MARKS)]
            self.assertEqual(bad, [], "sanitizer report in gateway%d's log" % k)

    def test_refuses_busy_port_and_starts_nothing(self):
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((HOST, 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        c = ClusterScript(extra_env={"CLUSTER_LB_PORT": str(port)})
        self.addCleanup(c.cleanup)
        try:
            rc = c.proc.p.wait(30)
        except subprocess.TimeoutExpired:
            self.fail("the script did not refuse the busy port:\n" + c.stderr())
        c.proc.stop()
        self.assertEqual(rc, 1, c.stderr())
        self.assertIn("port %d" % port, c.stderr())
        self.assertIn("already in use", c.stderr())
        self.assertIn("CLUSTER_LB_PORT", c.stderr())
        # Nothing was started: no Redis on its port, no run state.
        with self.assertRaises(OSError):
            socket.create_connection((HOST, c.redis_port), timeout=1).close()
        self.assertFalse(os.path.exists(os.path.join(c.run_dir, "cluster.env")))

    def test_check_mode_passes_and_leaves_nothing(self):
        c = ClusterScript(args=("--no-build", "--check"))
        self.addCleanup(c.cleanup)
        try:
            rc = c.proc.p.wait(90)
        except subprocess.TimeoutExpired:
            self.fail("--check did not finish:\n" + c.stderr())
        c.proc.stop()
        self.assertEqual(rc, 0, c.stderr())
        self.assertTrue(any("check passed" in l for l in c.proc.lines), c.stderr())
        pids = [int(l.split("pid ")[1].split()[0]) for l in c.proc.lines if " pid " in l]
        self.assertEqual(len(pids), N_GATEWAYS, c.stderr())
        self.assertEqual([p for p in pids if pid_alive(p)], [])


if __name__ == "__main__":
    unittest.main()
