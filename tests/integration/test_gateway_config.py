"""Gateway configuration: flags, PUSH_* environment variables and the config file, with the
documented precedence (flags > environment > file > defaults); --help, --version, JSON logs."""
import json
import os
import re
import subprocess
import tempfile
import unittest

import harness


def run_gateway(args, env_extra=None, timeout=10):
    """Starts the gateway against a closed Redis port, reads its start-up line, stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSH_")}
    env.update(env_extra or {})
    port = harness.free_port()
    p = harness.Proc([harness.GATEWAY, "--listen", "127.0.0.1:%d" % port,
                      "--redis", "redis://127.0.0.1:%d" % harness.free_port()] + args, env=env)
    try:
        _, line = p.wait_line("listening on", timeout)
    finally:
        rc = p.stop()
    return line, rc, p.lines


class ConfigSourcesTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pf-config-")
        self.file = os.path.join(self.dir, "gateway.conf")
        with open(self.file, "w") as f:
            f.write("# settings\nmerge-ms = 250\nthreads 1\nprefix = file:\n")

    def merge_ms(self, line):
        return int(re.search(r"merge window (\d+) ms", line).group(1))

    def test_defaults(self):
        line, rc, _ = run_gateway([])
        self.assertEqual(self.merge_ms(line), 1000)
        self.assertIn('prefix "push:"', line)
        self.assertEqual(rc, 0)

    def test_file_then_env_then_flags(self):
        line, _, _ = run_gateway(["--config", self.file])
        self.assertEqual(self.merge_ms(line), 250)
        self.assertIn(", 1 threads,", line)
        self.assertIn('prefix "file:"', line)
        line, _, _ = run_gateway(["--config", self.file], {"PUSH_MERGE_MS": "400"})
        self.assertEqual(self.merge_ms(line), 400)          # environment beats the file
        self.assertIn('prefix "file:"', line)               # the file still counts elsewhere
        line, _, _ = run_gateway(["--config", self.file, "--merge-ms", "600"],
                                 {"PUSH_MERGE_MS": "400"})
        self.assertEqual(self.merge_ms(line), 600)          # the flag beats both
        line, _, _ = run_gateway([], {"PUSH_CONFIG": self.file, "PUSH_PREFIX": "env:"})
        self.assertEqual(self.merge_ms(line), 250)          # PUSH_CONFIG names the file
        self.assertIn('prefix "env:"', line)

    def test_redis_url_from_environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSH_")}
        redis = harness.RedisServer()
        self.addCleanup(redis.cleanup)
        env["PUSH_REDIS_URL"] = redis.url
        p = harness.Proc([harness.GATEWAY, "--listen", "127.0.0.1:%d" % harness.free_port()],
                         env=env)
        try:
            p.wait_line("redis link up", 10)
            self.assertEqual(redis.call("CLIENT", "LIST").count(b"name=push-gateway"), 1)
        finally:
            self.assertEqual(p.stop(), 0)

    def test_bad_settings_are_refused_with_where(self):
        bad = os.path.join(self.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write("merge-ms = 10\nbogus = 1\n")
        r = subprocess.run([harness.GATEWAY, "--config", bad], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.conf:2: unknown setting", r.stderr)
        r = subprocess.run([harness.GATEWAY], capture_output=True, text=True,
                           env=dict(os.environ, PUSH_MERGE_MS="soon"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("--merge-ms must be a number", r.stderr)
        self.assertIn("PUSH_MERGE_MS", r.stderr)
        r = subprocess.run([harness.GATEWAY, "--config", os.path.join(self.dir, "none")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read config file", r.stderr)

    def test_help_lists_every_flag_and_the_environment(self):
        r = subprocess.run([harness.GATEWAY, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for flag in ("--listen", "--redis", "--prefix", "--merge-ms", "--merge-max-bytes",
                     "--threads", "--max-pending-bytes", "--max-message-bytes",
                     "--max-channels-per-conn", "--ping-interval", "--ping-timeout",
                     "--allowed-origins", "--drain-ms", "--log-level", "--log-format",
                     "--config", "--version"):
            self.assertIn(flag, r.stdout)
        self.assertIn("PUSH_REDIS_URL", r.stdout)
        self.assertIn("Precedence: flags, then environment, then the config file", r.stdout)
        r = subprocess.run([harness.GATEWAY, "--version"], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout), (0, "push-gateway 0.1.0\n"))

    def test_json_log_lines(self):
        line, rc, lines = run_gateway(["--log-format", "json"])
        self.assertEqual(rc, 0)
        for l in lines:
            rec = json.loads(l)
            self.assertEqual(sorted(rec), ["level", "msg", "pid", "proc", "ts"])
            self.assertEqual(rec["proc"], "push-gateway")
        start = json.loads(line)
        self.assertEqual(start["level"], "info")
        self.assertIn('prefix "push:"', start["msg"])       # quotes survive the escaping


if __name__ == "__main__":
    unittest.main()
