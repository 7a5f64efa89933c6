"""Hardening, on the wire: every kind of bad input a WebSocket client can send (issue 3, "Bad
input from WebSocket clients"), each with the exact outcome the RFCs and docs/PROTOCOL.md ask.

Everything is checked on raw bytes (wsclient.py), not through a client library that would hide
a mistake: the HTTP status line and headers of refused handshakes (and that no 101 was ever
sent), the close frame bytes (status code in network byte order, UTF-8 reason), the error reply
of each refused op, that the connection still works afterwards, and - through a Redis MONITOR
plus PUBSUB CHANNELS - that no Redis (UN)SUBSCRIBE was sent for a refused request.

References: RFC 6455 §4.2.1 (what a server must refuse), §4.4 (version mismatch), §5.1
(masking), §5.2 (RSV bits, opcodes), §5.4 (fragmentation), §5.5 / §5.5.1 (control frames,
close), §7.1.1 (server closes TCP first), §7.4 (status codes), §8.1 (UTF-8); RFC 7231
§6.5.15 (426 must carry Upgrade).
"""
import base64
import json
import os
import signal
import socket
import struct
import threading
import time
import unittest

import harness
import wsclient
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSClosed,
                      WSError, encode_frame)


def batch_bytes(channel, items):
    return b'{"channel":"' + channel.encode() + b'","messages":[' + b",".join(items) + b"]}"


def be16(code):
    return struct.pack("!H", code)


class RedisMonitor:
    """Records every command Redis executes (MONITOR), in the background."""

    def __init__(self, redis):
        self.conn = redis.conn()
        self.conn.s.settimeout(None)
        self.conn.send("MONITOR")
        first = self.conn.read()
        if first != "OK":
            raise AssertionError("MONITOR answered %r" % (first,))
        self.lines = []
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                line = self.conn.read()
            except (OSError, ConnectionError, ValueError):
                return
            if isinstance(line, str):
                with self.cv:
                    self.lines.append(line)
                    self.cv.notify_all()

    def subscribe_commands(self):
        """Lines of SUBSCRIBE/UNSUBSCRIBE/PSUBSCRIBE/PUNSUBSCRIBE/SSUBSCRIBE commands."""
        out = []
        with self.cv:
            for l in self.lines:
                parts = l.split('"')
                cmd = parts[1].lower() if len(parts) > 1 else ""
                if cmd.endswith("subscribe"):
                    out.append(l)
        return out

    def wait_for(self, needle, timeout=5.0):
        deadline = time.time() + timeout
        with self.cv:
            while not any(needle in l for l in self.lines):
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("MONITOR never showed %r; saw %r" % (
                        needle, self.lines[-20:]))
                self.cv.wait(left)

    def close(self):
        try:
            self.conn.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.t.join(2)


class WireCase(harness.GatewayTestCase):
    """Helpers shared by every test class below."""

    GW_ARGS = ("--merge-ms", 0)

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(*self.GW_ARGS)

    # -- HTTP ---------------------------------------------------------------------------

    def raw_request(self, lines, gw=None, body=b""):
        """Sends a request built from `lines` (request line + header lines) on a fresh TCP
        connection. Returns the HTTPResponse; fails if the gateway answers nothing."""
        gw = gw or self.gw
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            return wsclient.http_request(gw.host, gw.port, raw=raw, timeout=5)
        except WSClosed:
            self.fail("request %r: connection closed without any HTTP response" % raw)
        except socket.timeout as e:
            self.fail("request %r: no HTTP response within 5 s (%s)" % (raw, e))

    def ws_request_lines(self, gw=None, method="GET", path="/ws", version="HTTP/1.1",
                         drop=(), **override):
        """A valid RFC 6455 client handshake, with headers removed (drop) or replaced."""
        gw = gw or self.gw
        h = [("Host", "%s:%d" % (gw.host, gw.port)), ("Upgrade", "websocket"),
             ("Connection", "Upgrade"),
             ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
             ("Sec-WebSocket-Version", "13")]
        over = {k.replace("_", "-").lower(): v for k, v in override.items()}
        out = ["%s %s %s" % (method, path, version)]
        for k, v in h:
            if k.lower() in [d.lower() for d in drop]:
                continue
            v = over.pop(k.lower(), v)
            out.append("%s: %s" % (k, v))
        for k, v in over.items():
            out.append("%s: %s" % (k, v))
        return out

    def assert_refused(self, resp, what, statuses=None):
        self.assertNotEqual(resp.status, 101, "%s was upgraded: %r" % (what, resp.raw_head))
        self.assertNotIn(b" 101 ", resp.raw_head, what)
        if statuses:
            self.assertIn(resp.status, statuses, "%s -> %r %r" % (what, resp.raw_head, resp.body))
        else:
            self.assertTrue(400 <= resp.status < 500,
                            "%s -> %r %r (want a 4xx)" % (what, resp.raw_head, resp.body))
        self.assertIsNone(resp.header("sec-websocket-accept"), (what, resp.raw_head))

    def origin_status(self, gw, origin, host=None):
        """(client or None, HTTPResponse) of a handshake with this Origin (and Host)."""
        headers = {}
        if host is not None:
            headers["Host"] = host
        try:
            c, resp = wsclient.WSClient.try_connect(gw.host, gw.port, "/ws", origin=origin,
                                                    headers=headers)
        except WSClosed:
            self.fail("Origin %r: connection closed without an HTTP response" % origin)
        if c is not None:
            self._clients.append(c)
        return c, resp

    # -- WebSocket ----------------------------------------------------------------------

    def client(self, gw=None, path="/ws"):
        c = self.ws(gw or self.gw, path)
        c.strict = False  # a bad frame from the gateway is reported by the assertions here
        return c

    def assert_alive(self, c):
        c.send_json({"op": "ping"})
        self.assertEqual(c.recv_json(5), {"op": "pong"})

    def round_trip(self, c, channel, payload="rt"):
        """Subscribes c to channel (exactly one ack), publishes, expects exactly that batch."""
        self.subscribe(c, [channel])
        self.assertEqual(self.publish(channel, payload), 1)
        self.assertEqual(c.recv_message(5),
                         (OP_TEXT, batch_bytes(channel, [json.dumps(payload).encode()])))

    def assert_error(self, c, code, data, mentions=(), send=None):
        """Sends data as one text frame; the next message must be exactly one error reply
        with this code whose message mentions one of `mentions`; the connection stays."""
        (send or c.send_text)(data)
        try:
            op, raw = c.recv_message(5)
        except WSClosed as e:
            self.fail("%r: the gateway closed the connection (%s) instead of an error reply" % (
                data, e))
        self.assertEqual(op, OP_TEXT, (data, raw))
        msg = json.loads(raw.decode("utf-8"))
        self.assertEqual(msg.get("op"), "error", (data, msg))
        if isinstance(code, tuple):
            self.assertIn(msg.get("code"), code, (data, msg))
        else:
            self.assertEqual(msg.get("code"), code, (data, msg))
        self.assertIsInstance(msg.get("message"), str, msg)
        self.assertTrue(msg["message"].strip(), msg)
        if mentions:
            self.assertTrue(any(m.lower() in msg["message"].lower() for m in mentions),
                            "error message %r names none of %r (sent %r)" % (
                                msg["message"], mentions, data))
        self.assert_alive(c)
        return msg

    def expect_close(self, c, codes, what, need_reason=False, timeout=5.0, tcp_close=True):
        """Reads until the gateway's close frame; checks it byte by byte (RFC 6455 §5.5,
        §5.5.1, §7.4): unmasked, FIN, no RSV, payload 0 or 2..125 bytes, code in `codes` in
        network byte order, reason UTF-8 (non-empty if need_reason). The client answers with
        a close frame (auto_close_reply); with tcp_close the gateway must then close TCP
        within 3 s (§7.1.1). tcp_close=False leaves that to
        test_failed_connection_is_closed_without_waiting (after a protocol error, whether a
        reply gets through depends on how the rest of the bad frame is parsed). Returns the
        close payload."""
        c.strict = False
        c.auto_close_reply = True
        deadline = time.time() + timeout
        seen = []
        while True:
            try:
                f = c.recv_frame(max(0.01, deadline - time.time()))
            except WSClosed:
                self.fail("%s: TCP closed without a close frame (frames before: %r)" % (what, seen))
            except socket.timeout:
                self.fail("%s: no close frame within %.0f s; connection still open (frames: %r)"
                          % (what, timeout, seen))
            if f.opcode == OP_CLOSE:
                break
            seen.append(f)
        p = f.payload
        self.assertFalse(f.masked, "%s: masked close frame %r" % (what, f.raw))
        self.assertTrue(f.fin, "%s: fragmented close frame %r" % (what, f.raw))
        self.assertEqual(f.rsv, 0, "%s: RSV bits in close frame %r" % (what, f.raw))
        self.assertLessEqual(len(p), 125, "%s: close payload %r" % (what, p))
        self.assertGreaterEqual(len(p), 2, "%s: close frame without a status code: raw %r" % (
            what, f.raw))
        self.assertIn(struct.unpack("!H", p[:2])[0], codes,
                      "%s: close code %d, want one of %r; close frame bytes %r" % (
                          what, struct.unpack("!H", p[:2])[0], codes, f.raw))
        try:
            reason = p[2:].decode("utf-8")
        except UnicodeDecodeError:
            self.fail("%s: close reason is not UTF-8: %r" % (what, p))
        if need_reason:
            self.assertTrue(reason.strip(), "%s: close frame without a reason: %r" % (what, f.raw))
        if not tcp_close:
            return p
        # after its close frame the gateway sends nothing more and closes TCP
        try:
            extra = c.recv_frame(3)
            self.fail("%s: frame after the close frame: %r" % (what, extra))
        except WSClosed:
            pass
        except socket.timeout:
            self.fail("%s: TCP still open 3 s after the close frame %r" % (what, f.raw))
        return p

    def no_subscriptions_but(self, *channels):
        self.assertEqual(sorted(x.decode() for x in self.redis.call("PUBSUB", "CHANNELS")),
                         sorted(self.PREFIX + ch for ch in channels))

    def monitor(self):
        m = RedisMonitor(self.redis)
        self.addCleanup(m.close)
        return m

    def assert_only_subscribes(self, mon, barrier_channel, allowed):
        """Waits until MONITOR shows the SUBSCRIBE of barrier_channel (sent after the bad
        input on the same connection), then checks that every (un)subscribe command Redis saw
        names only `allowed` channels."""
        mon.wait_for('"%s%s"' % (self.PREFIX, barrier_channel))
        for line in mon.subscribe_commands():
            names = [p for p in line.split('"')[3::2]]
            for n in names:
                self.assertIn(n[len(self.PREFIX):] if n.startswith(self.PREFIX) else n,
                              list(allowed) + [barrier_channel],
                              "a Redis command was sent for a refused request: %s" % line)


# =========================================================================================
# Handshake (RFC 6455 §4.2.1, §4.4; RFC 7231 §6.5.15)


class HandshakeTest(WireCase):

    def test_valid_handshake_variants_are_accepted(self):
        # control: what the refusals below differ from is accepted, with the usual variations
        for what, lines in [
            ("plain", self.ws_request_lines()),
            ("Upgrade: WebSocket (case-insensitive)", self.ws_request_lines(upgrade="WebSocket")),
            ("Connection: keep-alive, Upgrade (Firefox)",
             self.ws_request_lines(connection="keep-alive, Upgrade")),
            ("Connection: upgrade (lowercase token)", self.ws_request_lines(connection="upgrade")),
        ]:
            with self.subTest(what):
                raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
                c = wsclient.WSClient.connect(self.gw.host, self.gw.port, raw_request=raw,
                                              check_accept=False)
                self._clients.append(c)
                key = [l.split(": ", 1)[1] for l in lines if l.startswith("Sec-WebSocket-Key")][0]
                self.assertEqual(c.response.status, 101)
                self.assertEqual(c.response.header("sec-websocket-accept"),
                                 wsclient.accept_key(key))
                self.assert_alive(c)
                c.close(1000, wait=2)

    def test_post_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(method="POST") + ["Content-Length: 0"])
        self.assert_refused(resp, "POST /ws with upgrade headers")

    def test_other_methods_are_refused(self):
        for method in ("PUT", "DELETE", "OPTIONS"):
            with self.subTest(method):
                resp = self.raw_request(self.ws_request_lines(method=method) +
                                        ["Content-Length: 0"])
                self.assert_refused(resp, "%s /ws with upgrade headers" % method)

    def test_http_1_0_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(version="HTTP/1.0"))
        self.assert_refused(resp, "GET /ws HTTP/1.0 with upgrade headers")

    def test_missing_host_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(drop=("Host",)))
        self.assert_refused(resp, "upgrade without Host")

    def test_missing_upgrade_header_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(drop=("Upgrade",)))
        self.assert_refused(resp, "upgrade request without Upgrade header")

    def test_wrong_upgrade_token_is_refused(self):
        for value in ("h2c", "websocketx", "web socket", "TLS/1.0"):
            with self.subTest(value):
                resp = self.raw_request(self.ws_request_lines(upgrade=value))
                self.assert_refused(resp, "Upgrade: %s" % value)

    def test_connection_without_upgrade_token_is_refused(self):
        for value in ("keep-alive", "close", "upgraded"):
            with self.subTest(value):
                resp = self.raw_request(self.ws_request_lines(connection=value))
                self.assert_refused(resp, "Connection: %s" % value)
        with self.subTest("no Connection header"):
            resp = self.raw_request(self.ws_request_lines(drop=("Connection",)))
            self.assert_refused(resp, "upgrade without Connection header")

    def test_missing_key_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(drop=("Sec-WebSocket-Key",)))
        self.assert_refused(resp, "upgrade without Sec-WebSocket-Key")

    def test_key_not_base64_of_16_bytes_is_refused(self):
        for what, key in [
            ("not base64", "this is not base64!!"),
            ("15 bytes", base64.b64encode(b"\x01" * 15).decode()),
            ("17 bytes", base64.b64encode(b"\x01" * 17).decode()),
            ("32 bytes", base64.b64encode(b"\x01" * 32).decode()),
            ("empty", ""),
            ("24 chars, bad alphabet", "!!!!!!!!!!!!!!!!!!!!!!=="),
        ]:
            with self.subTest(what):
                resp = self.raw_request(self.ws_request_lines(sec_websocket_key=key))
                self.assert_refused(resp, "Sec-WebSocket-Key %r (%s)" % (key, what))

    def test_unsupported_version_is_refused_with_supported_version_header(self):
        # §4.4: abort the handshake with an HTTP error (such as 426) AND a
        # Sec-WebSocket-Version header listing the versions the server understands
        for v in ("8", "12", "14", "abc"):
            with self.subTest(version=v):
                resp = self.raw_request(self.ws_request_lines(sec_websocket_version=v))
                self.assert_refused(resp, "Sec-WebSocket-Version: %s" % v)
                versions = [x.strip() for x in (resp.header("sec-websocket-version") or "").split(",")]
                self.assertIn("13", versions,
                              "version %s refused without `Sec-WebSocket-Version: 13` (§4.4): %r"
                              % (v, resp.raw_head))

    def test_missing_version_is_refused(self):
        resp = self.raw_request(self.ws_request_lines(drop=("Sec-WebSocket-Version",)))
        self.assert_refused(resp, "upgrade without Sec-WebSocket-Version")

    def test_plain_http_get_ws_is_426_with_a_hint(self):
        resp = self.raw_request(["GET /ws HTTP/1.1", "Host: %s:%d" % (self.gw.host, self.gw.port),
                                 "Connection: close"])
        self.assertEqual(resp.status, 426, (resp.raw_head, resp.body))
        # RFC 7231 §6.5.15: a 426 MUST carry an Upgrade header naming the protocol
        self.assertIn("websocket", (resp.header("upgrade") or "").lower(), resp.raw_head)
        self.assertTrue((resp.header("content-type") or "").startswith("text/"), resp.raw_head)
        text = resp.body.decode("utf-8")
        self.assertIn("WebSocket", text)
        self.assertIn("/ws", text)  # says where/how to connect

    def test_upgrade_on_other_path_is_404(self):
        for path in ("/nope", "/ws/", "/wsx", "/WS"):
            with self.subTest(path):
                resp = self.raw_request(self.ws_request_lines(path=path))
                self.assert_refused(resp, "upgrade at %s" % path, statuses=(404,))

    def test_gateway_still_serves_after_refusals(self):
        for lines in (self.ws_request_lines(drop=("Host",)),
                      self.ws_request_lines(connection="keep-alive"),
                      self.ws_request_lines(sec_websocket_key=""),
                      self.ws_request_lines(upgrade="h2c"),
                      self.ws_request_lines(sec_websocket_version="8")):
            s = socket.create_connection((self.gw.host, self.gw.port), timeout=3)
            try:
                s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                s.recv(4096)
            except OSError:
                pass
            finally:
                s.close()
        self.assertTrue(self.gw.alive())
        c = self.client()
        self.round_trip(c, "after-refusals")


# =========================================================================================
# Origin (cross-site WebSocket hijacking)


class OriginTest(WireCase):

    def test_default_is_same_origin_only(self):
        gw = self.gw
        hostport = "%s:%d" % (gw.host, gw.port)
        for origin in ("http://" + hostport, "https://" + hostport):
            with self.subTest(allowed=origin):
                c, resp = self.origin_status(gw, origin)
                self.assertEqual(resp.status, 101, (origin, resp.raw_head, resp.body))
                self.assert_alive(c)
        # no Origin: not a browser, allowed
        c, resp = self.origin_status(gw, None)
        self.assertEqual(resp.status, 101, resp.raw_head)
        for origin in ("http://evil.example", "http://evil.example:%d" % gw.port,
                       "http://%s:%d" % (gw.host, gw.port + 1),
                       "http://%s:%d.evil.example" % (gw.host, gw.port),
                       "http://localhost:%d" % gw.port, "null", "%s:%d" % (gw.host, gw.port)):
            with self.subTest(refused=origin):
                c, resp = self.origin_status(gw, origin)
                self.assertIsNone(c, "Origin %r was upgraded" % origin)
                self.assert_refused(resp, "Origin %r" % origin, statuses=(403,))

    def test_foreign_origin_with_matching_forged_host_is_still_checked(self):
        # Origin evil.example + Host evil.example would be "same origin": a browser cannot
        # forge Host, so this is allowed by design; but Origin evil + our Host is refused.
        gw = self.gw
        c, resp = self.origin_status(gw, "http://evil.example",
                                     host="%s:%d" % (gw.host, gw.port))
        self.assertIsNone(c)
        self.assert_refused(resp, "foreign Origin", statuses=(403,))

    def test_allowed_origins_list(self):
        gw = self.start_gateway("--merge-ms", 0, "--allowed-origins",
                                "https://app.example.com,https://admin.example.org:8443")
        for origin in ("https://app.example.com", "https://admin.example.org:8443"):
            with self.subTest(allowed=origin):
                c, resp = self.origin_status(gw, origin)
                self.assertEqual(resp.status, 101, (origin, resp.raw_head, resp.body))
                self.assert_alive(c)
        c, resp = self.origin_status(gw, None)
        self.assertEqual(resp.status, 101, resp.raw_head)
        same = "http://%s:%d" % (gw.host, gw.port)
        for origin in (same,  # with a list, only the list is allowed
                       "http://app.example.com", "https://app.example.com:443x",
                       "https://app.example.com.evil.net", "https://evil.app.example.com",
                       "https://admin.example.org", "https://app.example.co", "null", "*"):
            with self.subTest(refused=origin):
                c, resp = self.origin_status(gw, origin)
                self.assertIsNone(c, "Origin %r was upgraded" % origin)
                self.assert_refused(resp, "Origin %r" % origin, statuses=(403,))

    def test_allowed_origins_star(self):
        gw = self.start_gateway("--merge-ms", 0, "--allowed-origins", "*")
        for origin in ("http://evil.example", "null", "https://x.y:1",
                       "http://%s:%d" % (gw.host, gw.port), None):
            with self.subTest(origin=origin):
                c, resp = self.origin_status(gw, origin)
                self.assertEqual(resp.status, 101, (origin, resp.raw_head, resp.body))
                self.assert_alive(c)

    def test_refused_origin_creates_no_subscription(self):
        c, resp = self.origin_status(self.gw, "http://evil.example")
        # channels in the URL of a refused handshake are never subscribed
        try:
            c2, resp2 = wsclient.WSClient.try_connect(self.gw.host, self.gw.port,
                                                      "/ws?channels=hijack",
                                                      origin="http://evil.example")
        except WSClosed:
            self.fail("refused Origin: connection closed without an HTTP response")
        self.assertIsNone(c2)
        self.assertEqual(resp2.status, 403)
        time.sleep(0.3)
        self.no_subscriptions_but()


# =========================================================================================
# Frames: UTF-8, binary, size, fragmentation


class FrameContentTest(WireCase):
    GW_ARGS = ("--merge-ms", 0, "--max-message-bytes", 1024)

    INVALID_UTF8 = [
        ("lone 0xff", b"\xff"),
        ("lone continuation 0x80", b"\x80"),
        ("overlong '/' C0 AF", b"\xc0\xaf"),
        ("overlong 3-byte E0 80 AF", b"\xe0\x80\xaf"),
        ("UTF-16 surrogate ED A0 80", b"\xed\xa0\x80"),
        ("above U+10FFFF F4 90 80 80", b"\xf4\x90\x80\x80"),
        ("F5 lead byte", b"\xf5\x80\x80\x80"),
        ("truncated 3-byte E2 82 then quote", b"\xe2\x82"),
    ]

    def test_invalid_utf8_text_frame_closes_1007(self):
        for what, bad in self.INVALID_UTF8:
            with self.subTest(what):
                c = self.client()
                c.send_text(b'{"op":"ping","x":"' + bad + b'"}')
                p = self.expect_close(c, (1007,), "invalid UTF-8 (%s)" % what, need_reason=True,
                                      tcp_close=False)
                self.assertEqual(p[:2], b"\x03\xef")
        self.no_subscriptions_but()
        self.round_trip(self.client(), "utf8-after")

    def test_invalid_utf8_split_across_continuation_frames_closes_1007(self):
        cases = [
            # first fragment ends inside a 3-byte sequence, the continuation breaks it
            ("E2 | 28", [b'{"op":"ping","x":"\xe2', b'(\xa1"}']),
            ("E2 82 | 28", [b'{"op":"ping","x":"\xe2\x82', b'("}']),
            # valid first fragment, invalid byte only in a middle continuation frame
            ("ff in middle", [b'{"op":"ping",', b'"x":"\xff', b'"}']),
            # message ends inside a sequence (last fragment truncated)
            ("ends in F0 9F", [b'{"op":"ping","x":"', b'"}\xf0\x9f']),
            # a 4-byte sequence split 1|2|1 with a bad last byte
            ("F0 | 9F 98 | 28", [b'{"op":"ping","x":"\xf0', b"\x9f\x98", b'("}']),
        ]
        for what, parts in cases:
            with self.subTest(what):
                c = self.client()
                data = b"".join(parts)
                sizes, pos = [], 0
                for part in parts[:-1]:
                    sizes.append(len(part))
                c.send_fragmented(OP_TEXT, data, sizes)
                p = self.expect_close(c, (1007,), "invalid UTF-8 split across frames (%s)" % what,
                                      need_reason=True, tcp_close=False)
                self.assertEqual(p[:2], b"\x03\xef")
        self.no_subscriptions_but()

    def test_valid_multibyte_char_split_across_frames_is_accepted(self):
        note = "caf\u00e9 \u20ac \U0001F600".encode("utf-8")
        msg = b'{"op":"subscribe","channels":["mb"],"note":"' + note + b'"}'
        i_e9 = msg.index(b"\xc3\xa9") + 1       # between C3 | A9
        i_euro = msg.index(b"\xe2\x82\xac") + 2  # between E2 82 | AC
        i_emoji = msg.index(b"\xf0\x9f\x98\x80") + 1  # F0 | 9F 98 80
        c = self.client()
        bounds = [i_e9, i_euro, i_emoji, i_emoji + 2]  # ... and 9F 98 | 80
        sizes = [b - a for a, b in zip([0] + bounds[:-1], bounds)]
        c.send_fragmented(OP_TEXT, msg, sizes)
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["mb"]})
        self.assertEqual(c.expect_silence(0.3), [])
        self.assertEqual(self.numsub("mb"), 1)
        self.assertEqual(self.publish("mb", "ok"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("mb", [b'"ok"'])))

    def test_binary_frame_closes_1003(self):
        c = self.client()
        self.subscribe(c, ["bin-sub"])
        c.send_binary(b'{"op":"subscribe","channels":["bin"]}')
        p = self.expect_close(c, (1003,), "binary frame", need_reason=True)
        self.assertEqual(p[:2], b"\x03\xeb")
        self.assertEqual(self.numsub("bin"), 0)
        self.assertEqual(self.wait_numsub("bin-sub", 0), 0, "closed connection's channel kept")

    def test_fragmented_binary_message_closes_1003(self):
        c = self.client()
        c.send_fragmented(OP_BINARY, b'{"op":"ping"}', [4])
        p = self.expect_close(c, (1003,), "fragmented binary message", need_reason=True)
        self.assertEqual(p[:2], b"\x03\xeb")

    def _padded_subscribe(self, channel, total):
        head = b'{"op":"subscribe","channels":["' + channel.encode() + b'"],"pad":"'
        tail = b'"}'
        return head + b"p" * (total - len(head) - len(tail)) + tail

    def test_message_at_the_limit_is_accepted(self):
        c = self.client()
        msg = self._padded_subscribe("at-limit", 1024)
        self.assertEqual(len(msg), 1024)
        c.send_text(msg)
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["at-limit"]})
        # also in fragments adding up to exactly the limit
        msg = self._padded_subscribe("at-limit-frag", 1024)
        c.send_fragmented(OP_TEXT, msg, [300, 300, 300])
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["at-limit-frag"]})

    def test_message_over_the_limit_closes_1009_and_is_not_acted_on(self):
        mon = self.monitor()
        c = self.client()
        c.send_text(self._padded_subscribe("too-big", 1025))
        p = self.expect_close(c, (1009,), "1025-byte message (limit 1024)", need_reason=True,
                              tcp_close=False)
        self.assertEqual(p[:2], b"\x03\xf1")
        # a much bigger one (announced length far over the limit)
        c = self.client()
        c.send_text(self._padded_subscribe("too-big-2", 20000))
        p = self.expect_close(c, (1009,), "20000-byte message (limit 1024)", need_reason=True,
                              tcp_close=False)
        self.assertEqual(p[:2], b"\x03\xf1")
        ok = self.client()
        self.subscribe(ok, ["barrier"])
        self.assert_only_subscribes(mon, "barrier", [])
        self.assertEqual(self.numsub("too-big"), 0)
        self.assertEqual(self.numsub("too-big-2"), 0)
        self.no_subscriptions_but("barrier")

    def test_fragments_adding_up_over_the_limit_close_1009_and_are_not_acted_on(self):
        mon = self.monitor()
        c = self.client()
        msg = self._padded_subscribe("too-big-frag", 1200)
        c.send_fragmented(OP_TEXT, msg, [400, 400])  # 400 + 400 + 400
        p = self.expect_close(c, (1009,), "3 fragments of 400 bytes (limit 1024)",
                              need_reason=True, tcp_close=False)
        self.assertEqual(p[:2], b"\x03\xf1")
        # many tiny fragments: each frame is read whole, so the client's close reply is
        # parsed as such and the close handshake must complete (TCP closed within 3 s)
        c = self.client()
        msg = self._padded_subscribe("too-big-frag2", 1100)
        c.send_fragmented(OP_TEXT, msg, [10] * 109)
        p = self.expect_close(c, (1009,), "110 fragments adding up to 1100 bytes",
                              need_reason=True)
        self.assertEqual(p[:2], b"\x03\xf1")
        ok = self.client()
        self.subscribe(ok, ["barrier"])
        self.assert_only_subscribes(mon, "barrier", [])
        self.assertEqual(self.numsub("too-big-frag"), 0)
        self.no_subscriptions_but("barrier")

    def test_fragmented_subscribe_is_one_subscription_and_one_ack(self):
        mon = self.monitor()
        c = self.client()
        msg = b'{"op":"subscribe","channels":["frag-a","frag-b"]}'
        c.send_fragmented(OP_TEXT, msg, [7, 15, 12])  # text + 3 continuation frames
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["frag-a", "frag-b"]})
        self.assertEqual(c.expect_silence(0.5), [], "more than one ack")
        self.assertEqual(self.numsub("frag-a"), 1)
        self.assertEqual(self.numsub("frag-b"), 1)
        subs = [l for l in mon.subscribe_commands() if "frag-a" in l]
        self.assertEqual(len(subs), 1, subs)
        self.assertEqual(self.publish("frag-a", "one"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("frag-a", [b'"one"'])))
        self.assertEqual(c.expect_silence(0.3), [])

    def test_fragmented_subscribe_with_interleaved_pings(self):
        # §5.4: control frames may be injected in the middle of a fragmented message; §5.5.2:
        # each PING gets a PONG (§5.5.3: if several are pending, at least the most recent).
        # All frames go out in ONE TCP write, so the gateway reads them together.
        c = self.client()
        msg = b'{"op":"subscribe","channels":["frag-ping"]}'
        pings = {0: encode_frame(OP_PING, b"mid-0"), 2: encode_frame(OP_PING, b"mid-2")}
        c.send_fragmented(OP_TEXT, msg, [9, 12, 10], interleave=pings)
        pongs, msgs = [], []
        deadline = time.time() + 2.0
        while True:
            try:
                f = c.recv_frame(max(0.01, deadline - time.time()))
            except socket.timeout:
                break
            if f.opcode == OP_PONG:
                pongs.append(f.payload)
            elif f.opcode == OP_TEXT:
                self.assertTrue(f.fin, f)
                msgs.append(json.loads(f.payload))
            else:
                self.fail("unexpected frame %r" % (f,))
        self.assertEqual(msgs, [{"op": "subscribed", "channels": ["frag-ping"]}])
        self.assertIn(pongs, ([b"mid-0", b"mid-2"], [b"mid-2"]),
                      "PONGs for PINGs mid-0, mid-2 (sent in one write): %r; the most recent "
                      "PING must be answered (RFC 6455 §5.5.2/§5.5.3)" % pongs)
        self.assertEqual(self.numsub("frag-ping"), 1)
        self.assertEqual(self.publish("frag-ping", "x"), 1)
        self.assertEqual(c.recv_message(5), (OP_TEXT, batch_bytes("frag-ping", [b'"x"'])))

    def test_fragmented_subscribe_with_pings_in_separate_writes(self):
        c = self.client()
        c.send_frame(OP_TEXT, b'{"op":"subscribe",', fin=False)
        c.send_ping(b"p1")
        self.assertEqual(c.recv_frame(5)[:3], (OP_PONG, True, b"p1"))
        c.send_frame(OP_CONT, b'"channels":', fin=False)
        c.send_ping(b"p2")
        self.assertEqual(c.recv_frame(5)[:3], (OP_PONG, True, b"p2"))
        c.send_frame(OP_CONT, b'["frag-sep"]}', fin=True)
        self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["frag-sep"]})
        self.assertEqual(c.expect_silence(0.3), [])
        self.assertEqual(self.numsub("frag-sep"), 1)


# =========================================================================================
# Ops: error replies, no Redis command, connection stays


class OpErrorsTest(WireCase):

    def _run(self, cases):
        """cases: (code, bytes sent, mentions). All on one connection, then a barrier
        subscribe; no (UN)SUBSCRIBE may reach Redis for any of them."""
        self.subscribe(self.keep, ["keep"])
        before = self.redis.call("PUBSUB", "CHANNELS")
        for code, data, mentions in cases:
            with self.subTest(data=data):
                self.assert_error(self.keep, code, data, mentions)
        self.assertEqual(self.redis.call("PUBSUB", "CHANNELS"), before)
        self.subscribe(self.keep, ["barrier"])
        self.assert_only_subscribes(self.mon, "barrier", ["keep"])
        # the connection still delivers
        self.assertEqual(self.publish("keep", "still"), 1)
        self.assertEqual(self.keep.recv_message(5), (OP_TEXT, batch_bytes("keep", [b'"still"'])))

    def setUp(self):
        super().setUp()
        self.mon = self.monitor()
        self.keep = self.client()

    def test_bad_json(self):
        J = ("json",)
        self._run([
            ("bad_json", b"this is not json", J),
            ("bad_json", b'{"op":"subscribe",', J),
            ("bad_json", b'{"op":"subscribe","channels":["a"]', J),
            ("bad_json", b"{'op':'ping'}", J),
            ("bad_json", b'{"op":"ping"} {"op":"ping"}', J),
            ("bad_json", b'{"op":"ping",}', J),
            ("bad_json", b'{"op":"subscribe","channels":["a",]}', J),
            ("bad_json", b"", J),
            ("bad_json", b"   ", J),
            ("bad_json", b'{"op":"ping","n":01}', J),
            ("bad_json", b'{"op":"ping","s":"\\x41"}', J),
            ("bad_json", b'{"op":"subscribe","channels":["a\\u00"]}', J),
            ("bad_json", b"[" * 2000 + b"]" * 2000, J),  # nesting far beyond any limit
        ])

    def test_raw_nul_and_control_bytes_are_bad_json(self):
        J = ("json",)
        self._run([
            ("bad_json", b'{"op":"subscribe","channels":["a\x00b"]}', J),
            ("bad_json", b'{"op":"subscribe","channels":["ok\x00"]}', J),
            ("bad_json", b'{"op":"ping"}\x00', J),
            ("bad_json", b'\x00{"op":"ping"}', J),
            ("bad_json", b'{"op":"subscribe","channels":["ctl\x01x"]}', J),
            ("bad_json", b'{"op":"subscribe","channels":["tab\tx"]}', J),
            ("bad_json", b'{"op":"subscribe","channels":["nl\nx"]}', J),
            ("bad_json", b'{"op":"subscribe","channels":["esc\x1bx"]}', J),
        ])

    def test_unknown_op(self):
        O = ("op",)
        self._run([
            ("unknown_op", b'{"op":"dance"}', O),
            ("unknown_op", b'{"op":"SUBSCRIBE","channels":["a"]}', O),
            ("unknown_op", b'{"op":"psubscribe","channels":["a*"]}', O),
            ("unknown_op", b'{"op":""}', O),
            ("unknown_op", b'{"op":"subscribe\\u0000","channels":["a"]}', O),
            ("unknown_op", b'{"op":"pin"}', O),
            ("unknown_op", b'{"op":"pingg"}', O),
        ])

    def test_missing_fields_and_wrong_types(self):
        self._run([
            ("bad_request", b'{}', ("op",)),
            ("bad_request", b'{"channels":["a"]}', ("op",)),
            ("bad_request", b'{"op":"subscribe"}', ("channels",)),
            ("bad_request", b'{"op":"unsubscribe"}', ("channels",)),
            ("bad_request", b'{"op":1}', ("op",)),
            ("bad_request", b'{"op":null}', ("op",)),
            ("bad_request", b'{"op":["subscribe"]}', ("op",)),
            ("bad_request", b'{"op":{"x":1}}', ("op",)),
            ("bad_request", b'{"op":true}', ("op",)),
            ("bad_request", b'{"op":"subscribe","channels":"a"}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":null}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":{"a":1}}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":[]}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":[1]}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":["ok1",2]}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":[null]}', ("channels",)),
            ("bad_request", b'{"op":"subscribe","channels":[["a"]]}', ("channels",)),
            ("bad_request", b'{"op":"unsubscribe","channels":[true]}', ("channels",)),
            ("bad_request", b'[]', ("object", "op")),
            ("bad_request", b'["subscribe"]', ("object", "op")),
            ("bad_request", b'"ping"', ("object", "op")),
            ("bad_request", b'null', ("object", "op")),
            ("bad_request", b'42', ("object", "op")),
        ])

    def test_bad_channel_names(self):
        C = ("channel",)
        self._run([
            ("bad_channel", json.dumps({"op": "subscribe", "channels": [""]}).encode(), C),
            ("bad_channel", b'{"op":"subscribe","channels":["a b"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["st*r"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["q?"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["[x]"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["del\x7fx"]}', C),  # raw DEL: JSON-valid
            ("bad_channel", b'{"op":"subscribe","channels":["ctl\\u0001x"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["esc\\u001b"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["nl\\nx"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["del\\u007f"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["caf\\u00e9"]}', C),
            ("bad_channel", '{"op":"subscribe","channels":["caf\u00e9"]}'.encode(), C),
            ("bad_channel", b'{"op":"subscribe","channels":["\\ud83d\\ude00"]}', C),
            ("bad_channel", b'{"op":"unsubscribe","channels":["a b"]}', C),
            # all or nothing: a good name next to a bad one is not subscribed either
            ("bad_channel", b'{"op":"subscribe","channels":["good-one","bad one"]}', C),
        ])
        self.assertEqual(self.numsub("good-one"), 0)

    def test_nul_escape_in_channel_name(self):
        C = ("channel", "nul", "u+0000", "\\u0000")
        # "\u0000" decodes to NUL: refused, and never cut to the prefix before it
        self._run([
            ("bad_channel", b'{"op":"subscribe","channels":["\\u0000"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["ok\\u0000"]}', C),
            ("bad_channel", b'{"op":"subscribe","channels":["ok\\u0000evil"]}', C),
            ("bad_channel", b'{"op":"unsubscribe","channels":["keep\\u0000"]}', C),
        ])
        self.assertEqual(self.numsub("ok"), 0)
        self.assertEqual(self.numsub("keep"), 1)

    def test_lone_surrogates_in_channel_name(self):
        # RFC 8259 §8.2: an unpaired surrogate escape is not a character. It can never be a
        # valid channel name (§5 is ASCII only); whether the gateway calls it bad JSON
        # (docs: "not valid JSON (or not valid UTF-8)") or a bad channel, it must be an error
        # reply, with no Redis command and the connection kept.
        E = ("bad_channel", "bad_json")
        M = ("channel", "json", "surrogate", "utf")
        self._run([
            (E, b'{"op":"subscribe","channels":["\\ud800"]}', M),
            (E, b'{"op":"subscribe","channels":["x\\udc00"]}', M),
            (E, b'{"op":"subscribe","channels":["hi\\ud83dx"]}', M),
            (E, b'{"op":"subscribe","channels":["\\ude00\\ud83d"]}', M),
            (E, b'{"op":"subscribe","channels":["ok\\ud800"]}', M),
        ])
        self.assertEqual(self.numsub("ok"), 0)
        self.assertEqual(self.numsub("hi"), 0)

    def test_names_over_128_bytes(self):
        L = ("128", "long")
        self._run([
            ("bad_channel", json.dumps({"op": "subscribe", "channels": ["x" * 129]}).encode(), L),
            ("bad_channel", json.dumps({"op": "subscribe", "channels": ["y" * 5000]}).encode(), L),
            ("bad_channel", json.dumps({"op": "subscribe",
                                        "channels": ["ok", "z" * 129]}).encode(), L),
            ("bad_channel", json.dumps({"op": "unsubscribe", "channels": ["x" * 200]}).encode(), L),
        ])
        self.assertEqual(self.numsub("ok"), 0)
        # exactly 128 bytes is fine
        name = ("AZaz09_-.:@/" * 11)[:128]
        self.round_trip(self.keep, name)


class PayloadUtf8Test(WireCase):

    def test_escapes_and_surrogate_pairs_in_payloads_come_out_as_utf8(self):
        c = self.client()
        self.subscribe(c, ["pl"])
        cases = [
            # valid JSON with \u escapes: embedded byte for byte; decodes to é and U+1F600
            (b'"caf\\u00e9"', b'"caf\\u00e9"', "caf\u00e9"),
            (b'{"t":"\\ud83d\\ude00"}', b'{"t":"\\ud83d\\ude00"}', {"t": "\U0001F600"}),
            (b'["\\u00e9","\\uD83D\\uDE00"]', b'["\\u00e9","\\uD83D\\uDE00"]',
             ["\u00e9", "\U0001F600"]),
            # raw UTF-8 (not JSON): copied unchanged into a JSON string
            ("caf\u00e9".encode(), b'"caf\xc3\xa9"', "caf\u00e9"),
            ("\U0001F600".encode(), b'"\xf0\x9f\x98\x80"', "\U0001F600"),
            ("a\u20acb".encode(), b'"a\xe2\x82\xacb"', "a\u20acb"),
            # raw UTF-8 inside valid JSON: byte for byte
            ('{"t":"caf\u00e9\U0001F600"}'.encode(), '{"t":"caf\u00e9\U0001F600"}'.encode(),
             {"t": "caf\u00e9\U0001F600"}),
            # text that merely looks like an escape is escaped as text
            (b"x\\u00e9", b'"x\\\\u00e9"', "x\\u00e9"),
            # CESU-8 / encoded surrogates are not UTF-8: each byte becomes U+FFFD
            (b"\xed\xa0\xbd\xed\xb8\x80", b'"' + b"\xef\xbf\xbd" * 6 + b'"', "\ufffd" * 6),
            # a 4-byte sequence cut short at the end
            (b"ab\xf0\x9f\x98", None, None),
        ]
        for payload, want, decoded in cases:
            with self.subTest(payload=payload):
                self.assertEqual(self.publish("pl", payload), 1)
                f = c.recv_frame(5)
                self.assertEqual((f.opcode, f.fin), (OP_TEXT, True), f)
                text = f.payload.decode("utf-8")  # every frame is valid UTF-8
                if want is not None:
                    self.assertEqual(f.payload, batch_bytes("pl", [want]))
                    self.assertEqual(json.loads(text)["messages"], [decoded])
                else:
                    item = json.loads(text)["messages"][0]
                    self.assertTrue(item.startswith("ab") and set(item[2:]) == {"\ufffd"}, item)


class SubscriptionLimitsTest(WireCase):
    GW_ARGS = ("--merge-ms", 0, "--max-channels-per-conn", 3)

    def assert_delivers(self, c, channels):
        for ch in channels:
            self.assertEqual(self.publish(ch, "to-" + ch), 1, ch)
            self.assertEqual(c.recv_message(5),
                             (OP_TEXT, batch_bytes(ch, [json.dumps("to-" + ch).encode()])))

    def test_more_than_max_channels_is_too_many_channels(self):
        mon = self.monitor()
        c = self.client()
        self.subscribe(c, ["c1", "c2", "c3"])
        M = ("3",)
        self.assert_error(c, "too_many_channels", b'{"op":"subscribe","channels":["c4"]}', M)
        self.assert_error(c, "too_many_channels",
                          b'{"op":"subscribe","channels":["c4","c5","c6","c7"]}', M)
        self.assert_error(c, "too_many_channels", b'{"op":"subscribe","channels":["c1","c4"]}', M)
        # existing subscriptions keep delivering
        self.assert_delivers(c, ["c1", "c2", "c3"])
        for ch in ("c4", "c5", "c6", "c7"):
            self.assertEqual(self.numsub(ch), 0, ch)
        # one request naming more than the limit, on a fresh connection
        d = self.client()
        self.assert_error(d, "too_many_channels",
                          b'{"op":"subscribe","channels":["d1","d2","d3","d4"]}', M)
        self.assertEqual(self.numsub("d1"), 0)
        self.subscribe(d, ["barrier"])
        self.assert_only_subscribes(mon, "barrier", ["c1", "c2", "c3"])
        self.assert_delivers(c, ["c2"])

    def test_resubscribing_a_held_channel_at_the_limit_is_not_an_error(self):
        # PROTOCOL §2: subscribing to a channel the connection already has is not an error;
        # it does not add a subscription, so the limit is not passed
        c = self.client()
        self.subscribe(c, ["h1", "h2", "h3"])
        self.subscribe(c, ["h2"])
        self.subscribe(c, ["h3", "h1"])
        self.assert_delivers(c, ["h1", "h2", "h3"])

    def test_unsubscribe_never_joined_is_clean_and_others_keep_delivering(self):
        mon = self.monitor()
        c = self.client()
        other = self.client()
        self.subscribe(other, ["nj"])  # another connection holds "nj": must not be touched
        self.subscribe(c, ["u1", "u2"])
        self.unsubscribe(c, ["nj"])
        self.unsubscribe(c, ["never-1", "never-2"])
        self.assertEqual(c.expect_silence(0.3), [])
        self.assert_delivers(c, ["u1", "u2"])
        self.assert_delivers(other, ["nj"])
        self.assertEqual(self.numsub("nj"), 1)
        # a mix: leaves the joined one only
        self.unsubscribe(c, ["never-3", "u1"])
        self.assertEqual(self.wait_numsub("u1", 0), 0)
        self.assert_delivers(c, ["u2"])
        self.assertEqual(self.publish("u1", "gone"), 0)
        self.assertEqual(c.expect_silence(0.3), [])
        unsubs = [l for l in mon.subscribe_commands() if '"unsubscribe"' in l.lower()]
        self.assertEqual(len(unsubs), 1, "UNSUBSCRIBEs sent: %r" % unsubs)
        self.assertIn('"push:u1"', unsubs[0])


# =========================================================================================
# Close handling (RFC 6455 §5.5.1, §7.1, §7.4) and every protocol error


class CloseTest(WireCase):

    def test_client_close_1000_with_reason_is_echoed(self):
        c = self.client()
        self.subscribe(c, ["cl"])
        c.send_close(1000, b"bye now")
        p = self.expect_close(c, (1000,), "reply to close 1000 'bye now'")
        self.assertEqual(p[:2], b"\x03\xe8", "status code not echoed: %r" % p)
        self.assertEqual(self.wait_numsub("cl", 0), 0)

    def test_valid_close_codes_are_echoed(self):
        for code in (1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999):
            with self.subTest(code=code):
                c = self.client()
                c.send_close(code, b"r")
                p = self.expect_close(c, (code, 1000), "reply to close %d" % code)
                self.assertEqual(p[:2], be16(code),
                                 "close %d answered with %r (typically echoed, §5.5.1)" % (code, p))

    def test_client_close_without_payload(self):
        # §5.5.1/§7.4.1: no status code -> 1005 is "received", which MUST NOT be sent; the
        # reply is an empty close (the echo) or 1000
        c = self.client()
        c.send_frame(OP_CLOSE, b"")
        c.close_sent = True
        c.strict = False
        deadline = time.time() + 5
        while True:
            try:
                f = c.recv_frame(max(0.01, deadline - time.time()))
            except (WSClosed, socket.timeout) as e:
                self.fail("no close frame in reply to an empty close: %r" % e)
            if f.opcode == OP_CLOSE:
                break
        self.assertIn(f.payload, (b"", b"\x03\xe8"),
                      "reply to empty close: %r (raw %r)" % (f.payload, f.raw))
        self.assertTrue(f.fin and not f.masked and f.rsv == 0, f.raw)
        try:
            extra = c.recv_frame(3)
            self.fail("frame after close: %r" % (extra,))
        except WSClosed:
            pass
        except socket.timeout:
            self.fail("TCP still open 3 s after the close handshake")

    def test_gateway_closes_tcp_after_close_handshake(self):
        # the client answers nothing more and keeps its socket open: the server closes TCP
        c = self.client()
        c.send_close(1000, b"")
        t0 = time.time()
        self.expect_close(c, (1000,), "close 1000")
        self.assertLess(time.time() - t0, 3)

    def _protocol_error(self, what, send, codes=(1002,), subscribe_first=True):
        c = self.client()
        if subscribe_first:
            self.subscribe(c, ["pe"])
        send(c)
        p = self.expect_close(c, codes, what, tcp_close=False)
        if subscribe_first:
            self.assertEqual(self.wait_numsub("pe", 0), 0, "%s: subscription kept" % what)
        return p

    def test_close_with_one_byte_payload_is_1002(self):
        self._protocol_error("close with a 1-byte payload",
                             lambda c: c.send_frame(OP_CLOSE, b"\x03"))

    def test_close_with_invalid_codes_is_1002(self):
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
            with self.subTest(code=code):
                self._protocol_error("close with code %d" % code,
                                     lambda c: c.send_frame(OP_CLOSE, be16(code) + b"x"),
                                     subscribe_first=False)

    def test_close_with_invalid_utf8_reason(self):
        for what, reason in (("ff", b"\xff"), ("surrogate", b"ok\xed\xa0\x80"),
                             ("truncated", b"\xe2\x82")):
            with self.subTest(what):
                self._protocol_error("close 1000 with invalid UTF-8 reason (%s)" % what,
                                     lambda c: c.send_frame(OP_CLOSE, be16(1000) + reason),
                                     codes=(1007, 1002), subscribe_first=False)

    def test_control_frame_over_125_bytes_is_1002(self):
        for what, op, payload in (("ping 126", OP_PING, b"p" * 126),
                                  ("pong 200", OP_PONG, b"p" * 200),
                                  ("close 126", OP_CLOSE, be16(1000) + b"r" * 124)):
            with self.subTest(what):
                self._protocol_error(what, lambda c: c.send_frame(op, payload),
                                     subscribe_first=False)

    def test_fragmented_control_frame_is_1002(self):
        for what, op in (("ping", OP_PING), ("pong", OP_PONG), ("close", OP_CLOSE)):
            with self.subTest(what):
                self._protocol_error("%s with FIN=0" % what,
                                     lambda c: c.send_frame(op, b"\x03\xe8" if op == OP_CLOSE
                                                            else b"x", fin=False),
                                     subscribe_first=False)

    def test_rsv_bits_without_extension_are_1002(self):
        for rsv in (1, 2, 4, 7):
            with self.subTest(rsv=rsv):
                self._protocol_error("text frame with RSV=%d" % rsv,
                                     lambda c: c.send_frame(OP_TEXT, b'{"op":"ping"}', rsv=rsv),
                                     subscribe_first=False)
        with self.subTest("ping with RSV1"):
            self._protocol_error("ping frame with RSV1",
                                 lambda c: c.send_frame(OP_PING, b"x", rsv=4),
                                 subscribe_first=False)

    def test_unmasked_client_frame_is_1002(self):
        mon = self.monitor()
        self._protocol_error("unmasked text frame",
                             lambda c: c.send_frame(OP_TEXT, b'{"op":"subscribe","channels":["um"]}',
                                                    mask=False))
        self._protocol_error("unmasked ping", lambda c: c.send_frame(OP_PING, b"x", mask=False),
                             subscribe_first=False)
        ok = self.client()
        self.subscribe(ok, ["barrier"])
        self.assert_only_subscribes(mon, "barrier", ["pe"])
        self.assertEqual(self.numsub("um"), 0)

    def test_continuation_without_start_is_1002(self):
        self._protocol_error("continuation frame with nothing to continue",
                             lambda c: c.send_frame(OP_CONT, b'{"op":"ping"}', fin=True))
        self._protocol_error("non-final continuation with nothing to continue",
                             lambda c: c.send_frame(OP_CONT, b'{"op":', fin=False))

    def test_new_text_frame_inside_fragmented_message_is_1002(self):
        def send(c):
            c.send_frame(OP_TEXT, b'{"op":', fin=False)
            c.send_frame(OP_TEXT, b'{"op":"ping"}', fin=True)
        self._protocol_error("text frame while a fragmented message is in progress", send)

        def send_bin(c):
            c.send_frame(OP_TEXT, b'{"op":', fin=False)
            c.send_frame(OP_BINARY, b"x", fin=True)
        self._protocol_error("binary frame while a fragmented text message is in progress",
                             send_bin, codes=(1002, 1003))

    def test_reserved_opcodes_are_1002(self):
        for op in (0x3, 0x7, 0xB, 0xF):
            with self.subTest(opcode=op):
                self._protocol_error("reserved opcode 0x%X" % op,
                                     lambda c: c.send_frame(op, b"x"), subscribe_first=False)

    def test_gateway_still_serves_after_protocol_errors(self):
        for send in (lambda c: c.send_frame(0x3, b"x"),
                     lambda c: c.send_frame(OP_CONT, b"x"),
                     lambda c: c.send_frame(OP_CLOSE, be16(1004))):
            c = self.client()
            send(c)
            self.expect_close(c, (1002,), "protocol error", tcp_close=False)
            c.abort()
        self.round_trip(self.client(), "after-errors")

    def test_failed_connection_is_closed_without_waiting(self):
        # §7.1.7: to _Fail the WebSocket Connection_ the endpoint sends a close frame and then
        # MUST _Close the WebSocket Connection_ (the TCP connection); it MUST NOT go on
        # processing data "including a responding Close frame". So the TCP close must not
        # wait for the client's close reply. Here the client never replies.
        cases = [
            ("reserved opcode 0x3", lambda c: c.send_frame(0x3, b"x"), 1002),
            ("RSV1 on a text frame", lambda c: c.send_frame(OP_TEXT, b'{"op":"ping"}', rsv=4),
             1002),
            ("continuation with nothing to continue", lambda c: c.send_frame(OP_CONT, b"x"), 1002),
            ("invalid UTF-8 text (§8.1)", lambda c: c.send_frame(OP_TEXT, b'"\xff"'), 1007),
        ]
        for what, send, code in cases:
            with self.subTest(what):
                c = self.client()
                c.auto_close_reply = False
                c.strict = False
                send(c)
                t0 = time.time()
                close, eof_at = None, None
                while eof_at is None and time.time() - t0 < 2.0:
                    try:
                        f = c.recv_frame(max(0.01, 2.0 - (time.time() - t0)))
                    except WSClosed:
                        eof_at = time.time() - t0
                        break
                    except socket.timeout:
                        break
                    if f.opcode == OP_CLOSE:
                        close = f
                self.assertIsNotNone(close, "%s: no close frame" % what)
                self.assertEqual(close.payload[:2], be16(code), (what, close.raw))
                self.assertIsNotNone(eof_at, "%s: the gateway sent %r but kept TCP open for 2 s "
                                     "waiting for a close reply (§7.1.7)" % (what, close.raw))
                c.abort()


class GatewayOwnClosesTest(WireCase):
    """The closes the gateway starts: code in network byte order + a UTF-8 reason."""

    def test_slow_consumer_close_is_1008_with_reason(self):
        gw = self.start_gateway("--merge-ms", 0, "--max-pending-bytes", 65536)
        slow = self.ws(gw, "/ws?channels=sc", rcvbuf=4096)
        slow.strict = False
        self.assertEqual(slow.recv_json(5), {"op": "subscribed", "channels": ["sc"]})
        pad = "x" * 16384
        r = self.redis.conn()
        try:
            # ~12 MB: more than the kernel buffers plus the 64 KiB cap can hold
            for k in range(0, 750, 50):
                r.s.sendall(b"".join(harness.resp_encode("PUBLISH", "push:sc", '{"seq":%d,"p":"%s"}'
                                                         % (i, pad)) for i in range(k, k + 50)))
                for _ in range(50):
                    r.read()
        finally:
            r.close()
        deadline = time.time() + 20
        close = None
        while close is None:
            try:
                f = slow.recv_frame(max(0.01, deadline - time.time()))
            except WSClosed:
                self.fail("slow consumer: TCP closed without a close frame")
            except socket.timeout:
                self.fail("slow consumer never closed")
            if f.opcode == OP_CLOSE:
                close = f
        self.assertEqual(close.payload, b"\x03\xf0slow consumer", close.raw[:40])
        self.assertTrue(close.fin and not close.masked and close.rsv == 0, close.raw[:20])

    def test_sigterm_close_is_1001_with_reason_and_exit_0(self):
        gw = self.start_gateway("--merge-ms", 0, "--drain-ms", 2000)
        cs = [self.client(gw, "/ws?channels=bye") for _ in range(2)]
        for c in cs:
            self.assertEqual(c.recv_json(5), {"op": "subscribed", "channels": ["bye"]})
        gw.proc.send_signal(signal.SIGTERM)
        for c in cs:
            p = self.expect_close(c, (1001,), "SIGTERM", need_reason=True)
            self.assertEqual(p[:2], b"\x03\xe9")
        gw.stopped_by_test = True
        try:
            rc = gw.proc.p.wait(5)
        except Exception:
            self.fail("gateway did not exit within 5 s of SIGTERM (--drain-ms 2000)")
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
