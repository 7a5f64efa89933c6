"""Integration tests for push-publish: the command line and `serve`, against a real redis-server.

Every message check goes through a real Redis subscriber (SUBSCRIBE push:<channel>) and compares
exact bytes. Every process a test starts is stopped in tearDown.

Run: PF_BUILD_DIR=/path/to/build python3 -m unittest -v test_publisher
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import PUBLISH, Proc, RedisServer, RespConn, free_port

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def send_signal(proc, sig):
    """Signals a harness Proc by PID if it is still running."""
    if proc is not None and proc.alive():
        os.kill(proc.pid, sig)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PUSH_REDIS_URL", "PUSH_PREFIX")}
    env.update(extra)
    return env


def run_cli(args, stdin=b"", env=None, timeout=15):
    """Runs push-publish to completion; subprocess.run kills it if it overruns."""
    r = subprocess.run([PUBLISH] + args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env or clean_env(), timeout=timeout)
    err = r.stderr.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, err
    return r


class Subscriber:
    """A plain Redis client SUBSCRIBEd to push:<channel>, as the gateway would be."""

    def __init__(self, redis, *channels, prefix="push:"):
        self.c = redis.conn()
        for ch in channels:
            self.c.send("SUBSCRIBE", prefix + ch)
            kind, name, _ = self.c.read()
            assert kind == b"subscribe" and name == (prefix + ch).encode()

    def next(self, timeout=5.0):
        """Returns (redis channel, payload) of the next message."""
        self.c.s.settimeout(timeout)
        kind, name, payload = self.c.read()
        assert kind == b"message", kind
        return name, payload

    def close(self):
        self.c.close()


class PublisherTestCase(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer()
        self.servers = []
        self.subs = []
        self.extra_redis = []

    def tearDown(self):
        for s in self.subs:
            s.close()
        for p in self.servers:
            self._stop_server(p)
        for r in [self.redis] + self.extra_redis:
            send_signal(r.proc, signal.SIGCONT)
            r.cleanup()

    def _stop_server(self, p):
        rc = p.stop(signal.SIGTERM, timeout=10)  # also closes its pipes when already gone
        self.assertEqual(rc, 0, "\n".join(p.lines[-20:]))
        for line in p.lines:
            for mark in SANITIZER_MARKS:
                self.assertNotIn(mark, line, "\n".join(p.lines[-60:]))

    def subscribe(self, *channels, redis=None, prefix="push:"):
        s = Subscriber(redis or self.redis, *channels, prefix=prefix)
        self.subs.append(s)
        return s

    def assert_nothing_before(self, sub, channel, redis=None):
        """Publishes a marker straight to Redis: it must be the next message sub sees."""
        (redis or self.redis).call("PUBLISH", "push:" + channel, "marker")
        self.assertEqual(sub.next(), (("push:" + channel).encode(), b"marker"))


class CliTests(PublisherTestCase):
    def test_message_arrives_with_exact_bytes_and_count_is_printed(self):
        sub = self.subscribe("news")
        payload = '{"text":"h\u00e9llo","n":1} \u2603'
        r = run_cli(["--redis", self.redis.url, "news", payload])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"1\n", b""))
        self.assertEqual(sub.next(), (b"push:news", payload.encode()))

    def test_count_is_number_of_subscribers(self):
        r = run_cli(["--redis", self.redis.url, "nobody", "x"])
        self.assertEqual((r.returncode, r.stdout), (0, b"0\n"))
        self.subscribe("two")
        self.subscribe("two")
        r = run_cli(["--redis", self.redis.url, "two", "x"])
        self.assertEqual((r.returncode, r.stdout), (0, b"2\n"))

    def test_message_starting_with_dash_is_a_message(self):
        sub = self.subscribe("a")
        r = run_cli(["--redis", self.redis.url, "a", "-5"])
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(sub.next(), (b"push:a", b"-5"))

    def test_channel_with_every_allowed_character(self):
        ch = "Az09_-.:@/" + "x" * 118
        sub = self.subscribe(ch)
        r = run_cli(["--redis", self.redis.url, ch, "m"])
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(sub.next(), (("push:" + ch).encode(), b"m"))

    def test_stdin_one_message_per_line_in_order(self):
        sub = self.subscribe("feed")
        lines = ["msg %d" % i for i in range(300)]
        data = "".join(l + ("\r\n" if i % 3 == 0 else "\n") + ("\n" if i % 7 == 0 else "")
                       for i, l in enumerate(lines)).encode()
        data += b"last without newline"
        r = run_cli(["--redis", self.redis.url, "feed"], stdin=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"1\n" * 301)
        got = [sub.next()[1] for _ in range(301)]
        self.assertEqual(got, [l.encode() for l in lines] + [b"last without newline"])

    def test_stdin_large_input_is_pipelined_in_order(self):
        sub = self.subscribe("bulk")
        n = 20000
        data = b"".join(b"%d\n" % i for i in range(n))
        r = run_cli(["--redis", self.redis.url, "bulk"], stdin=data, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"1\n" * n)
        for i in range(n):
            self.assertEqual(sub.next()[1], b"%d" % i)

    def test_stdin_empty_input_publishes_nothing(self):
        sub = self.subscribe("e")
        r = run_cli(["--redis", self.redis.url, "e"], stdin=b"\n\r\n\n")
        # "\r\n" is an empty line too once its \r is stripped.
        self.assertEqual((r.returncode, r.stdout), (0, b""))
        self.assert_nothing_before(sub, "e")

    def test_prefix_from_flag_and_env_flag_wins(self):
        env_sub = self.subscribe("c", prefix="envp:")
        flag_sub = self.subscribe("c", prefix="flagp:")
        env = clean_env(PUSH_REDIS_URL=self.redis.url, PUSH_PREFIX="envp:")
        r = run_cli(["c", "from-env"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(env_sub.next(), (b"envp:c", b"from-env"))
        r = run_cli(["--prefix", "flagp:", "c", "from-flag"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(flag_sub.next(), (b"flagp:c", b"from-flag"))

    def test_redis_flag_wins_over_env(self):
        sub = self.subscribe("c")
        env = clean_env(PUSH_REDIS_URL="redis://127.0.0.1:%d" % free_port())
        r = run_cli(["--redis", self.redis.url, "c", "x"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(sub.next(), (b"push:c", b"x"))

    def test_bad_channel_exits_2_with_reason(self):
        for ch, reason in [("bad chan", "channel name may only contain A-Z a-z 0-9 _ - . : @ /"),
                           ("a*", "channel name may only contain A-Z a-z 0-9 _ - . : @ /"),
                           ("x" * 129, "channel name is longer than 128 bytes"),
                           ("", "channel name is empty")]:
            r = run_cli(["--redis", self.redis.url, ch, "m"])
            self.assertEqual((r.returncode, r.stdout), (2, b""), ch)
            err = r.stderr.decode()
            self.assertEqual(err.count("\n"), 1, err)
            self.assertTrue(err.rstrip("\n").endswith("error: bad channel name: " + reason), err)

    def test_unreachable_redis_exits_1(self):
        port = free_port()
        start = time.time()
        r = run_cli(["--redis", "redis://127.0.0.1:%d" % port, "c", "m"])
        self.assertLess(time.time() - start, 5)
        self.assertEqual((r.returncode, r.stdout), (1, b""))
        err = r.stderr.decode()
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("error: cannot connect to Redis at redis://127.0.0.1:%d/0: Connection refused"
                      % port, err)

    def test_bad_url_exits_2(self):
        cases = [("http://x", "Redis URL must start with redis:// or unix://"),
                 ("redis://h:99999", "port must be a number from 1 to 65535"),
                 ("redis://secret@h", "credentials must be written :password@ or user:password@")]
        for url, reason in cases:
            r = run_cli(["--redis", url, "c", "m"])
            self.assertEqual((r.returncode, r.stdout), (2, b""), url)
            err = r.stderr.decode()
            self.assertIn("error: bad Redis URL (from --redis): " + reason, err)
            self.assertNotIn("secret", err)
        r = run_cli(["c", "m"], env=clean_env(PUSH_REDIS_URL="nope"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad Redis URL (from PUSH_REDIS_URL)", r.stderr.decode())

    def test_usage_errors_exit_2(self):
        for args in ([], ["a", "b", "c"], ["--bogus", "c", "m"], ["--redis"]):
            r = run_cli(args)
            self.assertEqual((r.returncode, r.stdout), (2, b""), args)
            self.assertIn("error: ", r.stderr.decode())

    def test_serve_after_options_is_refused_but_channel_serve_works(self):
        r = run_cli(["--redis", self.redis.url, "serve"])
        self.assertEqual((r.returncode, r.stdout), (2, b""))
        self.assertIn("serve must come first", r.stderr.decode())
        sub = self.subscribe("serve")
        r = run_cli(["--redis", self.redis.url, "--", "serve", "m"])
        self.assertEqual((r.returncode, r.stdout), (0, b"1\n"))
        self.assertEqual(sub.next(), (b"push:serve", b"m"))

    def test_password_protected_redis(self):
        pw = RedisServer(password="s3cr:et")
        self.extra_redis.append(pw)
        sub = self.subscribe("p", redis=pw)
        url = "redis://:s3cr%%3Aet@127.0.0.1:%d" % pw.port
        r = run_cli(["--redis", url, "p", "authed"])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"1\n", b""))
        self.assertEqual(sub.next(), (b"push:p", b"authed"))
        # Wrong password: a clear one-line message, exit 1, and the password is not printed.
        r = run_cli(["--redis", "redis://:wrong@127.0.0.1:%d" % pw.port, "p", "x"])
        self.assertEqual((r.returncode, r.stdout), (1, b""))
        err = r.stderr.decode()
        self.assertIn("error: Redis authentication failed (redis://127.0.0.1:%d/0 (auth)): "
                      "WRONGPASS" % pw.port, err)
        self.assertNotIn("wrong", err.replace("WRONGPASS", ""))
        # No password at all: Redis refuses the PUBLISH.
        r = run_cli(["--redis", "redis://127.0.0.1:%d" % pw.port, "p", "x"])
        self.assertEqual((r.returncode, r.stdout), (1, b""))
        self.assertIn("error: Redis refused PUBLISH (redis://127.0.0.1:%d/0): NOAUTH" % pw.port,
                      r.stderr.decode())
        self.assert_nothing_before(sub, "p", redis=pw)

    def test_acl_user_and_db(self):
        self.redis.call("ACL", "SETUSER", "pub", "on", ">pw", "~*", "&*", "+@all")
        sub = self.subscribe("u")
        r = run_cli(["--redis", "redis://pub:pw@127.0.0.1:%d/3" % self.redis.port, "u", "acl"])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"1\n", b""))
        self.assertEqual(sub.next(), (b"push:u", b"acl"))

    def test_unix_socket(self):
        ux = RedisServer(unixsocket=True)
        self.extra_redis.append(ux)
        sub = self.subscribe("u", redis=ux)
        r = run_cli(["--redis", "unix://%s" % ux.unix, "u", "via unix"])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"1\n", b""))
        self.assertEqual(sub.next(), (b"push:u", b"via unix"))

    def test_version_and_help(self):
        r = run_cli(["--version"])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"push-publish 0.1.0\n", b""))
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0)
        text = r.stdout.decode()
        for needle in ["--redis URL", "redis://127.0.0.1:6379", "PUSH_REDIS_URL", "--prefix STR",
                       '"push:"', "PUSH_PREFIX", "--listen HOST:PORT", "127.0.0.1:8081",
                       "--max-body-bytes N", "1048576", "--api-key KEY", "--api-key-file PATH",
                       "empty lines are skipped", "--version", "Exit status"]:
            self.assertIn(needle, text)
        r = run_cli(["serve", "--help"])
        self.assertEqual((r.returncode, r.stdout.decode()), (0, text))


def http_request(port, method, path, body=None, headers=None, timeout=5.0):
    """Returns (status, headers as a lower-cased dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class HttpTestCase(PublisherTestCase):
    def start_server(self, *args, redis_url=None, wait_up=True):
        port = free_port()
        argv = [PUBLISH, "serve", "--listen", "127.0.0.1:%d" % port,
                "--redis", redis_url or self.redis.url] + list(args)
        p = Proc(argv, env=clean_env())
        self.servers.append(p)
        p.wait_line("listening on 127.0.0.1:%d" % port)
        if wait_up:
            p.wait_line("Redis link up")
        self.port = port
        self.server = p
        return p

    def req(self, method, path, body=None, headers=None, cors=True, timeout=5.0):
        status, hdrs, data = http_request(self.port, method, path, body, headers, timeout)
        if cors:
            self.assertEqual(hdrs.get("access-control-allow-origin"), "*", (status, data))
        return status, hdrs, data

    def assert_error(self, resp, status, code, message=None):
        st, hdrs, data = resp
        self.assertEqual(st, status, data)
        self.assertEqual(hdrs.get("content-type"), "application/json")
        obj = json.loads(data)
        self.assertEqual(sorted(obj), ["error", "message"])
        self.assertEqual(obj["error"], code)
        if message is not None:
            self.assertEqual(obj["message"], message)
        return obj

    def wait_publish_ok(self, channel, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            st, _, data = self.req("POST", "/publish/" + channel, b"probe")
            if st == 200:
                return data
            if time.time() > deadline:
                self.fail("no recovery within %.0fs: %s %r" % (timeout, st, data))
            time.sleep(0.1)


class HttpPublishTests(HttpTestCase):
    def setUp(self):
        super().setUp()
        self.start_server()

    def test_single_publish_exact_body_and_bytes(self):
        sub = self.subscribe("news")
        payload = b"\x00\xff raw \r\n bytes \xe2\x98\x83"
        st, hdrs, data = self.req("POST", "/publish/news", payload)
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertEqual(sub.next(), (b"push:news", payload))

    def test_single_publish_counts_and_empty_body(self):
        st, _, data = self.req("POST", "/publish/nobody", b"x")
        self.assertEqual((st, data), (200, b'{"receivers":0}'))
        sub = self.subscribe("e")
        st, _, data = self.req("POST", "/publish/e", b"")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:e", b""))

    def test_channel_in_path_is_percent_decoded(self):
        sub = self.subscribe("room:1@x/y")
        st, _, data = self.req("POST", "/publish/room%3A1@x/y?ignored=1", b"m")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:room:1@x/y", b"m"))

    def test_batch_publishes_in_order_with_exact_payloads(self):
        a = self.subscribe("a")
        b = self.subscribe("b")
        body = ('[ {"channel":"a","data":"text \\u00e9\\n\\"q\\""},'
                ' {"data": {"k" : [1, 2.50, true, null, "s p"]}, "channel":"b"},'
                ' {"channel":"a","data":12345678901234567890},'
                ' {"channel":"nobody","data":"x"},'
                ' {"channel":"a","data":"\\ud83d\\ude00"} ]')
        st, _, data = self.req("POST", "/publish", body.encode(),
                               {"Content-Type": "application/json"})
        self.assertEqual(st, 200, data)
        self.assertEqual(data, b'{"results":[{"channel":"a","receivers":1},'
                               b'{"channel":"b","receivers":1},{"channel":"a","receivers":1},'
                               b'{"channel":"nobody","receivers":0},'
                               b'{"channel":"a","receivers":1}]}')
        self.assertEqual(a.next(), (b"push:a", 'text \u00e9\n"q"'.encode()))
        self.assertEqual(a.next(), (b"push:a", b"12345678901234567890"))
        self.assertEqual(a.next(), (b"push:a", "\U0001F600".encode()))
        self.assertEqual(b.next(), (b"push:b", b'{"k":[1,2.50,true,null,"s p"]}'))

    def test_empty_batch(self):
        st, _, data = self.req("POST", "/publish", b" [ ] ")
        self.assertEqual((st, data), (200, b'{"results":[]}'))

    def test_bad_batch_publishes_nothing(self):
        sub = self.subscribe("a")
        bad = [
            (b'[{"channel":"a","data":1},{"channel":"b c","data":2}]', "bad_channel",
             "batch[1]: channel name may only contain A-Z a-z 0-9 _ - . : @ /"),
            (b'[{"channel":"a","data":1},{"channel":"' + b"x" * 129 + b'","data":2}]',
             "bad_channel", "batch[1]: channel name is longer than 128 bytes"),
            (b'[{"channel":"a","data":1},{"channel":"a\\u0000b","data":2}]', "bad_channel",
             "batch[1]: channel: string contains U+0000"),
            (b'[{"channel":"a","data":1},{"channel":"a"}]', "bad_json",
             'batch[1]: missing "data"'),
            (b'[{"channel":"a","data":1},{"data":1}]', "bad_json", 'batch[1]: missing "channel"'),
            (b'[{"channel":"a","data":1},{"channel":5,"data":1}]', "bad_json",
             'batch[1]: "channel" must be a string'),
            (b'[{"channel":"a","data":1},{"channel":"a","data":1,"extra":0}]', "bad_json",
             'batch[1]: unknown key; expected "channel" and "data"'),
            (b'[{"channel":"a","data":1},{"channel":"a","channel":"b","data":1}]', "bad_json",
             "batch[1]: duplicate key channel"),
            (b'[{"channel":"a","data":1},{"channel":"a","data":"\\ud800"}]', "bad_json",
             "batch[1]: data: string contains a lone UTF-16 surrogate"),
            (b'[{"channel":"a","data":1},7]', "bad_json",
             'batch[1]: must be an object; the body must be an array of '
             '{"channel":"name","data":...} objects'),
            (b'{"channel":"a","data":1}', "bad_json",
             'body must be an array of {"channel":"name","data":...} objects'),
            (b'[{"channel":"a","data":1},]', "bad_json",
             'body is not valid JSON (or not UTF-8); it must be an array of '
             '{"channel":"name","data":...} objects'),
            (b'[{"channel":"a","data":"\xff"}]', "bad_json",
             'body is not valid JSON (or not UTF-8); it must be an array of '
             '{"channel":"name","data":...} objects'),
            (b'', "bad_json",
             'body is not valid JSON (or not UTF-8); it must be an array of '
             '{"channel":"name","data":...} objects'),
        ]
        for body, code, message in bad:
            self.assert_error(self.req("POST", "/publish", body), 400, code, message)
        self.assert_nothing_before(sub, "a")

    def test_bad_channel_in_path(self):
        for path, message in [("/publish/bad%20chan", "channel name may only contain "
                               "A-Z a-z 0-9 _ - . : @ /"),
                              ("/publish/", "channel name is empty"),
                              ("/publish/a%00b", "channel name may only contain "
                               "A-Z a-z 0-9 _ - . : @ /"),
                              ("/publish/" + "x" * 129, "channel name is longer than 128 bytes")]:
            self.assert_error(self.req("POST", path, b"m"), 400, "bad_channel", message)

    def test_healthz(self):
        st, hdrs, data = self.req("GET", "/healthz")
        self.assertEqual((st, data), (200, b'{"status":"ok"}'))
        self.assertEqual(hdrs["content-type"], "application/json")

    def test_unknown_path_404(self):
        for method, path in [("GET", "/"), ("POST", "/publishx"), ("GET", "/healthz/"),
                             ("POST", "/nope/publish/a")]:
            self.assert_error(self.req(method, path), 404, "not_found")

    def test_wrong_method_405(self):
        for method, path, allow in [("GET", "/publish/a", "POST, OPTIONS"),
                                    ("PUT", "/publish", "POST, OPTIONS"),
                                    ("DELETE", "/publish/a", "POST, OPTIONS"),
                                    ("POST", "/healthz", "GET, HEAD, OPTIONS")]:
            resp = self.req(method, path, b"" if method != "GET" else None)
            self.assert_error(resp, 405, "method_not_allowed",
                              "this endpoint accepts " + allow)
            self.assertEqual(resp[1]["allow"], allow)

    def test_cors_preflight(self):
        for path in ["/publish/a", "/publish", "/healthz"]:
            st, hdrs, data = self.req("OPTIONS", path, headers={
                "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization"})
            self.assertEqual((st, data), (204, b""))
            self.assertEqual(hdrs["access-control-allow-methods"], "POST, GET, OPTIONS")
            self.assertEqual(hdrs["access-control-allow-headers"], "Content-Type, Authorization")

    def test_keepalive_connection_serves_many_requests(self):
        sub = self.subscribe("k")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            for i in range(50):
                c.request("POST", "/publish/k", body=b"%d" % i)
                r = c.getresponse()
                self.assertEqual((r.status, r.read()), (200, b'{"receivers":1}'))
        finally:
            c.close()
        for i in range(50):
            self.assertEqual(sub.next()[1], b"%d" % i)

    def test_concurrent_requests(self):
        sub = self.subscribe("cc")
        results = []

        def worker(n):
            for i in range(20):
                results.append(self.req("POST", "/publish/cc", b"%d-%d" % (n, i))[:3:2])
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [(200, b'{"receivers":1}')] * 160)
        got = sorted(sub.next()[1] for _ in range(160))
        self.assertEqual(got, sorted(b"%d-%d" % (n, i) for n in range(8) for i in range(20)))


class HttpLimitTests(HttpTestCase):
    def test_body_over_limit_413(self):
        self.start_server("--max-body-bytes", "1000")
        sub = self.subscribe("big")
        st, _, data = self.req("POST", "/publish/big", b"x" * 1000)
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:big", b"x" * 1000))
        # Refused by libevent while reading (evhttp_set_max_body_size): its own page, no CORS.
        st, _, _ = self.req("POST", "/publish/big", b"x" * 1001, cors=False)
        self.assertEqual(st, 413)
        st, _, _ = self.req("POST", "/publish", b"[" + b" " * 5000 + b"]", cors=False)
        self.assertEqual(st, 413)
        # Chunked bodies have no Content-Length to check up front.
        st, _, _ = self.req("POST", "/publish/big", iter([b"y" * 600, b"y" * 600]), cors=False)
        self.assertEqual(st, 413)
        self.assert_nothing_before(sub, "big")
        # The server is still fine afterwards.
        st, _, data = self.req("POST", "/publish/big", b"ok")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))

    def test_api_key(self):
        self.start_server("--api-key", "k3y-ABC")
        sub = self.subscribe("s")
        for hdrs in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer k3y-AB"},
                     {"Authorization": "Bearer k3y-ABCD"}, {"Authorization": "Basic k3y-ABC"},
                     {"Authorization": "k3y-ABC"}]:
            resp = self.req("POST", "/publish/s", b"no", hdrs)
            self.assert_error(resp, 401, "unauthorized",
                              "missing or wrong API key; send Authorization: Bearer KEY")
            self.assertEqual(resp[1]["www-authenticate"], 'Bearer realm="push-publish"')
            self.assert_error(self.req("POST", "/publish", b"[]", hdrs), 401, "unauthorized")
        st, _, data = self.req("POST", "/publish/s", b"yes", {"Authorization": "Bearer k3y-ABC"})
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        st, _, data = self.req("POST", "/publish", b'[{"channel":"s","data":"yes2"}]',
                               {"Authorization": "bearer k3y-ABC"})
        self.assertEqual((st, data), (200, b'{"results":[{"channel":"s","receivers":1}]}'))
        self.assertEqual(sub.next(), (b"push:s", b"yes"))
        self.assertEqual(sub.next(), (b"push:s", b"yes2"))
        # Health checks and CORS preflight never carry credentials.
        self.assertEqual(self.req("GET", "/healthz")[0], 200)
        self.assertEqual(self.req("OPTIONS", "/publish/s")[0], 204)

    def test_api_key_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as f:
            f.write("from-file-key\n")
        self.addCleanup(os.unlink, f.name)
        self.start_server("--api-key-file", f.name)
        self.assert_error(self.req("POST", "/publish/s", b"x"), 401, "unauthorized")
        st, _, data = self.req("POST", "/publish/s", b"x",
                               {"Authorization": "Bearer from-file-key"})
        self.assertEqual((st, data), (200, b'{"receivers":0}'))

    def test_serve_usage_errors_exit_2(self):
        cases = [(["--api-key", "a", "--api-key-file", "/dev/null"],
                  "use --api-key or --api-key-file, not both"),
                 (["--api-key", "has space"], "bad --api-key: API key may only contain"),
                 (["--api-key-file", "/nonexistent/key"], "bad --api-key-file /nonexistent/key"),
                 (["--max-body-bytes", "0"], "--max-body-bytes must be a number"),
                 (["--max-body-bytes", "12x"], "--max-body-bytes must be a number"),
                 (["--listen", "127.0.0.1"], "--listen must be HOST:PORT"),
                 (["--listen", "127.0.0.1:70000"], "--listen must be HOST:PORT"),
                 (["--redis", "tcp://x"], "bad Redis URL (from --redis)"),
                 (["--prefix", "p" * 64], "bad prefix (from --prefix): longer than 63 bytes"),
                 (["extra"], 'serve takes no arguments, got "extra"')]
        for args, needle in cases:
            r = run_cli(["serve"] + args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(needle, r.stderr.decode(), args)

    def test_listen_port_in_use_exits_1(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        port = s.getsockname()[1]
        r = run_cli(["serve", "--listen", "127.0.0.1:%d" % port, "--redis", self.redis.url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use" % port,
                      r.stderr.decode())

    def test_password_protected_redis(self):
        pw = RedisServer(password="pa ss")
        self.extra_redis.append(pw)
        self.start_server(redis_url="redis://:pa%%20ss@127.0.0.1:%d" % pw.port)
        sub = self.subscribe("p", redis=pw)
        st, _, data = self.req("POST", "/publish/p", b"authed")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:p", b"authed"))

    def test_unix_socket_redis(self):
        ux = RedisServer(unixsocket=True)
        self.extra_redis.append(ux)
        self.start_server(redis_url="unix://%s" % ux.unix)
        sub = self.subscribe("u", redis=ux)
        st, _, data = self.req("POST", "/publish/u", b"via unix")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:u", b"via unix"))

    def test_prefix_flag(self):
        self.start_server("--prefix", "other:")
        sub = self.subscribe("c", prefix="other:")
        st, _, data = self.req("POST", "/publish", b'[{"channel":"c","data":[1]}]')
        self.assertEqual((st, data), (200, b'{"results":[{"channel":"c","receivers":1}]}'))
        self.assertEqual(sub.next(), (b"other:c", b"[1]"))

    def test_wrong_password_is_logged_once_and_503(self):
        pw = RedisServer(password="right")
        self.extra_redis.append(pw)
        p = self.start_server(redis_url="redis://:wrong@127.0.0.1:%d" % pw.port, wait_up=False)
        p.wait_line("AUTH refused: WRONGPASS")
        self.assert_error(self.req("POST", "/publish/p", b"x"), 503, "redis_unavailable",
                          "Redis is not reachable; nothing was published; retry later")
        time.sleep(1.5)  # several retries happen meanwhile; none may log again
        self.assertEqual(p.count_lines("WRONGPASS"), 1, "\n".join(p.lines))
        self.assertNotIn("wrong", "\n".join(p.lines).replace("WRONGPASS", ""))


class HttpRedisFaultTests(HttpTestCase):
    def test_redis_killed_gives_503_fast_then_recovers(self):
        self.start_server()
        self.redis.stop()
        self.server.wait_line("Redis link down")
        start = time.time()
        resp = self.req("POST", "/publish/x", b"m", timeout=3)
        self.assertLess(time.time() - start, 3.0)
        self.assert_error(resp, 503, "redis_unavailable",
                          "Redis is not reachable; nothing was published; retry later")
        self.assertEqual(resp[1]["retry-after"], "1")
        start = time.time()
        resp = self.req("POST", "/publish", b'[{"channel":"a","data":1},{"channel":"b","data":2}]',
                        timeout=3)
        self.assertLess(time.time() - start, 3.0)
        self.assert_error(resp, 503, "redis_unavailable")
        self.assertEqual(self.req("GET", "/healthz")[0], 200)
        self.redis.start()
        self.wait_publish_ok("x")
        sub = self.subscribe("x")
        st, _, data = self.req("POST", "/publish/x", b"after restart")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:x", b"after restart"))
        self.assertEqual(self.server.count_lines("Redis link down"), 1)
        self.assertEqual(self.server.count_lines("Redis link up again"), 1)

    def test_silent_redis_gives_503_within_3s_then_recovers(self):
        self.start_server()
        sub = self.subscribe("s")
        send_signal(self.redis.proc, signal.SIGSTOP)
        start = time.time()
        resp = self.req("POST", "/publish/s", b"m", timeout=5)
        elapsed = time.time() - start
        self.assertLess(elapsed, 3.0)
        self.assertGreater(elapsed, 1.5)
        self.assert_error(resp, 503, "redis_timeout",
                          "Redis did not answer within 2 s; unconfirmed messages may or may not "
                          "have been published; retry later")
        # The link was dropped: the next request does not wait another 2 s.
        start = time.time()
        self.assert_error(self.req("POST", "/publish/s", b"m2", timeout=5), 503,
                          "redis_unavailable")
        self.assertLess(time.time() - start, 1.0)
        send_signal(self.redis.proc, signal.SIGCONT)
        self.wait_publish_ok("s")
        # Redis was only paused: "m" reached it before the timeout and is delivered late;
        # "m2" was refused before reaching Redis and is not.
        self.assertEqual(sub.next(), (b"push:s", b"m"))
        self.assertEqual(sub.next(), (b"push:s", b"probe"))

    def test_redis_down_at_start_then_up(self):
        port = free_port()
        p = self.start_server(redis_url="redis://127.0.0.1:%d" % port, wait_up=False)
        p.wait_line("Redis unreachable (redis://127.0.0.1:%d/0): Connection refused" % port)
        self.assertEqual(self.req("GET", "/healthz")[0], 200)
        self.assert_error(self.req("POST", "/publish/a", b"m", timeout=3), 503,
                          "redis_unavailable")
        late = RedisServer(port=port)
        self.extra_redis.append(late)
        p.wait_line("Redis link up (redis://127.0.0.1:%d/0)" % port)
        sub = self.subscribe("a", redis=late)
        st, _, data = self.req("POST", "/publish/a", b"late")
        self.assertEqual((st, data), (200, b'{"receivers":1}'))
        self.assertEqual(sub.next(), (b"push:a", b"late"))
        self.assertEqual(p.count_lines("Redis unreachable"), 1)


class HttpShutdownTests(HttpTestCase):
    def test_sigterm_exits_0(self):
        p = self.start_server()
        self.assertEqual(self.req("GET", "/healthz")[0], 200)
        start = time.time()
        self.assertEqual(p.stop(signal.SIGTERM), 0)
        self.assertLess(time.time() - start, 2.0)
        p.wait_line("stopped")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()

    def test_sigint_exits_0(self):
        p = self.start_server()
        self.assertEqual(p.stop(signal.SIGINT), 0)

    def test_sigterm_finishes_request_in_flight(self):
        p = self.start_server()
        send_signal(self.redis.proc, signal.SIGSTOP)  # keeps the request waiting on Redis
        out = {}

        def client():
            out["resp"] = http_request(self.port, "POST", "/publish/f", b"m", timeout=10)
        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.5)
        send_signal(p, signal.SIGTERM)
        p.wait_line("no longer accepting; finishing 1 request(s) in flight")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        t.join(10)
        status, hdrs, data = out["resp"]
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(data)["error"], "redis_timeout")
        self.assertEqual(hdrs["connection"], "close")
        self.assertEqual(p.p.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
