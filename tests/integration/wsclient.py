"""A raw-socket RFC 6455 WebSocket client for integration tests (python3 stdlib only).

Everything is written and read on the wire so a test sees the exact bytes: the HTTP
handshake (also refused ones), every frame with its FIN/RSV/opcode bits, close codes and
reasons, and the moment the peer closes the TCP connection. Nothing is hidden: a test can
send malformed frames (bad opcodes, unmasked frames, wrong lengths, raw bytes) at will.

    c = WSClient.connect("127.0.0.1", port, "/ws?channels=a")
    c.send_json({"op": "subscribe", "channels": ["b"]})
    msg = c.recv_json(timeout=5)
    op, fin, payload = c.recv_frame(timeout=5)

WSPool manages hundreds of connections with `selectors` for fan-out tests.
"""
import base64
import hashlib
import json
import os
import selectors
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
OP_NAMES = {0: "CONT", 1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}


class WSError(Exception):
    """Protocol violation seen from the server side, or a failed handshake."""


class HandshakeRefused(WSError):
    """The server did not answer 101; .response holds the status, headers and body."""

    def __init__(self, response):
        self.response = response
        WSError.__init__(self, "handshake refused: %d %s; body %r" % (
            response.status, response.reason, response.body[:300]))


class WSClosed(WSError):
    """The peer sent a close frame (code/reason set) and/or closed TCP (eof set)."""

    def __init__(self, code=None, reason=b"", eof=False, frame=None):
        self.code = code
        self.reason = reason
        self.eof = eof
        self.frame = frame
        WSError.__init__(self, "connection closed by peer: code=%r reason=%r tcp_eof=%r" % (
            code, reason, eof))


class HTTPResponse:
    """A raw HTTP response: status line, headers (list, in order, and a lowercase dict), body."""

    def __init__(self, raw_head, status, reason, version, headers, body=b""):
        self.raw_head = raw_head
        self.status = status
        self.reason = reason
        self.version = version
        self.header_list = headers
        self.headers = {}
        for k, v in headers:
            k = k.lower()
            self.headers[k] = self.headers[k] + ", " + v if k in self.headers else v
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "<HTTPResponse %d %s %r body=%d bytes>" % (
            self.status, self.reason, self.headers, len(self.body))


class Frame(tuple):
    """(opcode, fin, payload) plus .rsv (3-bit int), .masked and .raw (the exact frame bytes)."""

    def __new__(cls, opcode, fin, payload, rsv=0, masked=False, raw=b""):
        self = tuple.__new__(cls, (opcode, fin, payload))
        self.rsv = rsv
        self.masked = masked
        self.raw = raw
        return self

    opcode = property(lambda self: self[0])
    fin = property(lambda self: self[1])
    payload = property(lambda self: self[2])

    def close_info(self):
        """For a close frame: (code or None, reason bytes)."""
        return parse_close_payload(self.payload)

    def __repr__(self):
        return "Frame(%s, fin=%s, rsv=%d, %r)" % (
            OP_NAMES.get(self.opcode, hex(self.opcode)), self.fin, self.rsv, self.payload[:200])


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str or bytes)."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def mask_bytes(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None,
                 length=None, length_form=None):
    """Builds one frame. length overrides the announced payload length (lie on purpose);
    length_form forces 7/16/64-bit length encoding ('7', '16', '64') even when non-minimal."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    form = length_form or ("7" if n < 126 else "16" if n < 65536 else "64")
    if form == "7":
        head = struct.pack("!BB", b0, mbit | n)
    elif form == "16":
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        if mask_key is None:
            mask_key = os.urandom(4)
        return head + mask_key + mask_bytes(payload, mask_key)
    return head + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def parse_close_payload(payload):
    if len(payload) >= 2:
        return struct.unpack("!H", payload[:2])[0], payload[2:]
    return None, payload


def parse_frame(buf, max_payload=1 << 30):
    """Parses one frame from the start of buf. Returns (Frame, consumed) or (None, 0)."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    if n > max_payload:
        raise WSError("frame announces %d payload bytes" % n)
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None, 0
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_bytes(payload, key)
    raw = bytes(buf[:pos + n])
    return Frame(b0 & 0x0F, bool(b0 & 0x80), payload, (b0 >> 4) & 7, masked, raw), pos + n


VALID_CLOSE_CODES = set(range(1000, 1004)) | set(range(1007, 1012)) | set(range(3000, 5000))


def server_frame_problem(f):
    """What is wrong with a frame received from a server (RFC 6455 §5), or None."""
    if f.masked:
        return "masked frame from a server (§5.1)"
    if f.rsv:
        return "RSV bits set without a negotiated extension (§5.2)"
    if f.opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        return "reserved opcode %d (§5.2)" % f.opcode
    if f.opcode & 0x8:
        if not f.fin:
            return "fragmented control frame (§5.5)"
        if len(f.payload) > 125:
            return "control frame payload over 125 bytes (§5.5)"
    if f.opcode == OP_CLOSE and f.payload:
        if len(f.payload) == 1:
            return "close payload of 1 byte (§5.5.1)"
        code = struct.unpack("!H", f.payload[:2])[0]
        if code not in VALID_CLOSE_CODES:
            return "close code %d may not be sent (§7.4)" % code
        try:
            f.payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return "close reason is not UTF-8 (§5.5.1)"
    raw = f.raw
    n = raw[1] & 0x7F if len(raw) > 1 else 0
    if n == 126 and len(f.payload) < 126 or n == 127 and len(f.payload) < 65536:
        return "non-minimal payload length encoding (§5.2)"
    return None


# ---------------------------------------------------------------------------------------
# HTTP


def _split_head(data):
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return None, data
    return data[:i + 4], data[i + 4:]


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise WSError("bad HTTP status line %r" % lines[0])
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return version, status, reason, headers


def _read_head(sock, deadline, buf=b""):
    while True:
        head, rest = _split_head(buf)
        if head is not None:
            return head, rest
        left = deadline - time.time()
        if left <= 0:
            raise socket.timeout("no complete HTTP response head; got %r" % buf[:300])
        sock.settimeout(left)
        d = sock.recv(65536)
        if not d:
            raise WSClosed(eof=True) if not buf else WSError(
                "connection closed inside HTTP head: %r" % buf[:300])
        buf += d


def _dechunk(data):
    out, pos = b"", 0
    while True:
        j = data.find(b"\r\n", pos)
        if j < 0:
            return out, False
        size = int(data[pos:j].split(b";")[0] or b"0", 16)
        if size == 0:
            return out, True
        if len(data) < j + 2 + size + 2:
            return out, False
        out += data[j + 2:j + 2 + size]
        pos = j + 2 + size + 2


def _read_body(sock, resp, rest, deadline, method="GET"):
    """Reads the body by Content-Length, chunked encoding, or until EOF/deadline."""
    if method == "HEAD" or resp.status in (101, 204, 304) or 100 <= resp.status < 200:
        return rest
    te = (resp.header("transfer-encoding") or "").lower()
    cl = resp.header("content-length")
    data = rest
    while True:
        if "chunked" in te:
            body, done = _dechunk(data)
            if done:
                return body
        elif cl is not None and len(data) >= int(cl):
            return data[:int(cl)]
        left = deadline - time.time()
        if left <= 0:
            return _dechunk(data)[0] if "chunked" in te else data
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            d = b""
        if not d:
            return _dechunk(data)[0] if "chunked" in te else data
        data += d


def http_request(host, port, path="/", method="GET", headers=None, body=b"", timeout=5.0,
                 raw=None, source_addr=None):
    """One HTTP/1.1 request on a fresh connection (Connection: close); returns HTTPResponse.
    raw: exact request bytes to send instead of building one."""
    deadline = time.time() + timeout
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source_addr, 0) if source_addr else None)
    try:
        if raw is None:
            h = {"Host": "%s:%d" % (host, port), "Connection": "close"}
            if body:
                h["Content-Length"] = str(len(body))
            for k, v in (headers or {}).items():
                h[k] = v
            req = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
                "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None) + "\r\n"
            raw = req.encode("latin-1") + (body.encode() if isinstance(body, str) else body)
        sock.sendall(raw)
        head, rest = _read_head(sock, deadline)
        version, status, reason, hl = _parse_head(head)
        resp = HTTPResponse(head, status, reason, version, hl)
        resp.body = _read_body(sock, resp, rest, deadline, method)
        return resp
    finally:
        sock.close()


def http_get(host, port, path="/", headers=None, timeout=5.0):
    return http_request(host, port, path, "GET", headers, timeout=timeout)


# ---------------------------------------------------------------------------------------
# WebSocket client


class WSClient:
    """One WebSocket connection. Use WSClient.connect(...) to open it.

    auto_pong: answer every PING frame with a PONG carrying the same payload (on by default).
    auto_close_reply: answer a close frame with a close frame echoing its code (on by default).
    strict: raise WSError on any frame a server must never send (masked, RSV bits, reserved
    opcode, bad control frame, invalid close code/reason, non-minimal length); on by default.
    Every PING seen is appended to .pings (payloads), every PONG to .pongs.
    """

    def __init__(self, sock, response=None, host=None, port=None):
        self.sock = sock
        self.response = response
        self.host = host
        self.port = port
        self.buf = bytearray()
        self.auto_pong = True
        self.auto_close_reply = True
        self.pings = []
        self.pongs = []
        self.close_code = None
        self.close_reason = None
        self.close_frame = None
        self.close_sent = False
        self.eof = False
        self._frag_op = None
        self._frag = []
        self.bytes_in = 0
        self.strict = True  # raise WSError on a frame no RFC 6455 server may send

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def connect(cls, host, port, path="/ws", headers=None, origin=None, timeout=5.0,
                key=None, source_addr=None, rcvbuf=None, sndbuf=None, raw_request=None,
                check_accept=True):
        """Opens a TCP connection and performs the handshake.

        headers: dict that overrides/extends the default request headers; a value of None
        removes that header. origin: adds an Origin header. rcvbuf: SO_RCVBUF set before
        connect (so the window is small from the start). raw_request: exact request bytes.
        Raises HandshakeRefused (with .response: status, headers, body) if the answer is not
        101, WSError if a 101 does not validate (Upgrade/Connection/Sec-WebSocket-Accept)."""
        deadline = time.time() + timeout
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if source_addr:
                sock.bind((source_addr, 0))
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if key is None:
                key = base64.b64encode(os.urandom(16)).decode()
            if raw_request is None:
                h = {"Host": "%s:%d" % (host, port), "Upgrade": "websocket",
                     "Connection": "Upgrade", "Sec-WebSocket-Key": key,
                     "Sec-WebSocket-Version": "13"}
                if origin is not None:
                    h["Origin"] = origin
                for k, v in (headers or {}).items():
                    # case-insensitive override of a default header
                    for dk in list(h):
                        if dk.lower() == k.lower():
                            del h[dk]
                    h[k] = v
                raw_request = ("GET %s HTTP/1.1\r\n" % path + "".join(
                    "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None)
                    + "\r\n").encode("latin-1")
            sock.sendall(raw_request)
            head, rest = _read_head(sock, deadline)
            version, status, reason, hl = _parse_head(head)
            resp = HTTPResponse(head, status, reason, version, hl)
            if status != 101:
                resp.body = _read_body(sock, resp, rest, deadline)
                raise HandshakeRefused(resp)
            if check_accept:
                if (resp.header("upgrade") or "").lower() != "websocket":
                    raise WSError("101 without Upgrade: websocket: %r" % resp.headers)
                if "upgrade" not in [t.strip() for t in (resp.header("connection") or "").lower().split(",")]:
                    raise WSError("101 without Connection: Upgrade: %r" % resp.headers)
                if resp.header("sec-websocket-accept") != accept_key(key):
                    raise WSError("bad Sec-WebSocket-Accept %r (want %r)" % (
                        resp.header("sec-websocket-accept"), accept_key(key)))
            c = cls(sock, resp, host, port)
            c.buf += rest
            sock.settimeout(None)
            return c
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def try_connect(host, port, path="/ws", **kw):
        """Like connect, but returns (client or None, HTTPResponse) instead of raising on refusal."""
        try:
            c = WSClient.connect(host, port, path, **kw)
            return c, c.response
        except HandshakeRefused as e:
            return None, e.response

    # -- sending -----------------------------------------------------------------------

    def send_raw(self, data):
        """Writes bytes as they are (for malformed-frame tests)."""
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None, **kw):
        self.sock.sendall(encode_frame(opcode, payload, fin, mask, rsv, mask_key, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    def send_close(self, code=1000, reason=b""):
        self.close_sent = True
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def send_fragmented(self, opcode, payload, sizes, interleave=None):
        """Sends payload as len(sizes)+1 frames: the first with opcode, the rest CONT, the
        last with FIN; sizes are the byte counts of all frames but the last.
        interleave: {index: frame bytes} written after fragment number index (e.g. a PING)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        parts, pos = [], 0
        for s in sizes:
            parts.append(payload[pos:pos + s])
            pos += s
        parts.append(payload[pos:])
        out = b""
        for i, p in enumerate(parts):
            out += encode_frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
            if interleave and i in interleave:
                out += interleave[i]
        self.sock.sendall(out)

    # -- receiving ---------------------------------------------------------------------

    def _fill(self, deadline):
        """Reads more bytes; raises socket.timeout at deadline, WSClosed on TCP EOF/reset."""
        if self.eof:
            raise WSClosed(self.close_code, self.close_reason or b"", True, self.close_frame)
        left = deadline - time.time()
        if left <= 0:
            raise socket.timeout("timed out waiting for data from the server")
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            raise socket.timeout("timed out waiting for data from the server")
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.eof = True
            raise WSClosed(self.close_code, self.close_reason or b"", True, self.close_frame)
        self.bytes_in += len(d)
        self.buf += d

    def feed(self, data):
        self.bytes_in += len(data)
        self.buf += data

    def pop_frame(self):
        """Parses one buffered frame (no I/O); handles PING/CLOSE side effects. Or None."""
        f, n = parse_frame(self.buf)
        if f is None:
            return None
        del self.buf[:n]
        self._on_frame(f)
        return f

    def _on_frame(self, f):
        if self.strict:
            problem = server_frame_problem(f)
            if problem:
                raise WSError("protocol violation by the server: %s: %r" % (problem, f))
        if f.opcode == OP_PING:
            self.pings.append(f.payload)
            if self.auto_pong and not self.eof:
                try:
                    self.send_frame(OP_PONG, f.payload)
                except OSError:
                    pass
        elif f.opcode == OP_PONG:
            self.pongs.append(f.payload)
        elif f.opcode == OP_CLOSE:
            self.close_frame = f
            self.close_code, self.close_reason = parse_close_payload(f.payload)
            if self.auto_close_reply and not self.close_sent:
                self.close_sent = True
                try:
                    self.send_frame(OP_CLOSE, close_payload(self.close_code) if self.close_code else b"")
                except OSError:
                    pass

    def recv_frame(self, timeout=5.0):
        """Next frame of any kind as Frame (opcode, fin, payload). PINGs are auto-answered
        (unless auto_pong is off) and still returned. Raises socket.timeout, or WSClosed on
        TCP EOF (a close frame is returned as a frame)."""
        deadline = time.time() + timeout
        while True:
            f = self.pop_frame()
            if f is not None:
                return f
            self._fill(deadline)

    def recv_message(self, timeout=5.0):
        """Next complete data message as (opcode, payload bytes), fragments reassembled.
        Control frames are handled (PING → PONG) and skipped. A close frame raises WSClosed
        with its code and reason."""
        deadline = time.time() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.time()))
            if f.opcode == OP_CLOSE:
                raise WSClosed(self.close_code, self.close_reason, self.eof, f)
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if f.opcode == OP_CONT:
                if self._frag_op is None:
                    raise WSError("continuation frame without a start: %r" % (f,))
                self._frag.append(f.payload)
            else:
                if f.opcode & 0x8 or f.opcode not in (OP_TEXT, OP_BINARY):
                    raise WSError("unexpected opcode from server: %r" % (f,))
                if self._frag_op is not None:
                    raise WSError("new data frame inside a fragmented message: %r" % (f,))
                self._frag_op, self._frag = f.opcode, [f.payload]
            if f.fin:
                op, data = self._frag_op, b"".join(self._frag)
                self._frag_op, self._frag = None, []
                return op, data

    def recv_text(self, timeout=5.0):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise WSError("expected a text message, got opcode %d: %r" % (op, data[:200]))
        return data.decode("utf-8")

    def recv_json(self, timeout=5.0):
        return json.loads(self.recv_text(timeout))

    def expect_silence(self, seconds):
        """Returns the data messages received within `seconds` (normally asserted empty)."""
        got = []
        deadline = time.time() + seconds
        while True:
            left = deadline - time.time()
            if left <= 0:
                return got
            try:
                got.append(self.recv_message(left))
            except socket.timeout:
                return got

    def wait_closed(self, timeout=5.0):
        """Reads (discarding data) until the peer closes: returns (close_code, reason, eof)
        once TCP EOF is seen, or after a close frame if the peer then also shuts TCP within
        the deadline. Raises socket.timeout if the connection is still open at the deadline."""
        deadline = time.time() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.time()))
            except WSClosed:
                return self.close_code, self.close_reason, True
            if f.opcode == OP_CLOSE:
                # the server should now close TCP (RFC 6455 §7.1.1); wait for it briefly
                try:
                    while True:
                        self.recv_frame(max(0.05, deadline - time.time()))
                except WSClosed:
                    return self.close_code, self.close_reason, True
                except socket.timeout:
                    return self.close_code, self.close_reason, False

    def is_open(self, probe=0.0):
        """True if no close frame was seen and TCP is not at EOF (reads for `probe` seconds,
        buffering any data)."""
        if self.eof or self.close_frame is not None:
            return False
        try:
            self.sock.settimeout(max(probe, 0.001))
            d = self.sock.recv(1 << 20)
            if not d:
                self.eof = True
                return False
            self.buf += d
        except socket.timeout:
            pass
        except OSError:
            self.eof = True
            return False
        pos = 0
        while True:
            f, n = parse_frame(self.buf[pos:])
            if f is None:
                return True
            if f.opcode == OP_CLOSE:
                return False
            pos += n

    def close(self, code=1000, reason=b"", wait=0.0):
        """Sends a close frame (if none was sent yet), optionally waits for the peer's close,
        then closes the socket."""
        try:
            if not self.close_sent and not self.eof:
                self.send_close(code, reason)
                if wait:
                    self.wait_closed(wait)
        except (OSError, WSError):
            pass
        self.abort()

    def abort(self):
        """Closes the TCP socket without a close frame."""
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self):
        return self.sock.fileno()


# ---------------------------------------------------------------------------------------
# Many connections


class WSPool:
    """Hundreds of WSClient connections read with `selectors`.

    Each client keeps its data messages in pool.messages[i] (list of (opcode, payload)),
    and its closed state in pool.closed[i] (WSClosed or None).
    """

    def __init__(self):
        self.clients = []
        self.messages = []
        self.closed = []
        self.sel = selectors.DefaultSelector()

    def __len__(self):
        return len(self.clients)

    def connect(self, n, host, port, path="/ws", source_addrs=None, **kw):
        """Opens n more connections (handshake each). source_addrs: list of local addresses
        used round-robin (e.g. 127.0.0.2, 127.0.0.3 …). Returns their indexes."""
        idx = []
        for k in range(n):
            src = source_addrs[k % len(source_addrs)] if source_addrs else None
            c = WSClient.connect(host, port, path, source_addr=src, **kw)
            idx.append(self.add(c))
        return idx

    def add(self, c):
        i = len(self.clients)
        self.clients.append(c)
        self.messages.append([])
        self.closed.append(None)
        self.sel.register(c.sock, selectors.EVENT_READ, i)
        self._drain_client(i)  # frames that arrived together with the handshake response
        return i

    def _drain_client(self, i):
        c = self.clients[i]
        while True:
            try:
                f = c.pop_frame()
            except WSError as e:
                self.closed[i] = e
                return
            if f is None:
                return
            if f.opcode == OP_CLOSE:
                self.closed[i] = WSClosed(c.close_code, c.close_reason, c.eof, f)
                continue
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if f.opcode == OP_CONT:
                c._frag.append(f.payload)
            else:
                c._frag_op, c._frag = f.opcode, [f.payload]
            if f.fin:
                self.messages[i].append((c._frag_op, b"".join(c._frag)))
                c._frag_op, c._frag = None, []

    def poll(self, timeout=0.1):
        """Reads whatever is ready (waits at most timeout); returns number of sockets read."""
        n = 0
        for key, _ in self.sel.select(timeout):
            i = key.data
            c = self.clients[i]
            try:
                c.sock.settimeout(0)
                d = c.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            n += 1
            if not d:
                c.eof = True
                self.sel.unregister(c.sock)
                if not isinstance(self.closed[i], WSClosed) or not self.closed[i].eof:
                    self.closed[i] = WSClosed(c.close_code, c.close_reason or b"", True, c.close_frame)
                continue
            c.feed(d)
            c.sock.settimeout(5.0)  # blocking-with-timeout for any auto PONG write
            self._drain_client(i)
        return n

    def wait_until(self, pred, timeout=10.0):
        """Polls until pred(self) is true; returns True, or False at the deadline."""
        deadline = time.time() + timeout
        while not pred(self):
            left = deadline - time.time()
            if left <= 0:
                return pred(self)
            self.poll(min(left, 0.2))
        return True

    def wait_each(self, count, timeout=10.0, idx=None):
        """Waits until every client (or those in idx) holds at least count messages."""
        ids = list(range(len(self.clients))) if idx is None else list(idx)
        return self.wait_until(lambda p: all(len(p.messages[i]) >= count for i in ids), timeout)

    def send_all(self, data_fn):
        """Sends a text frame to every open client: data_fn(i) -> str/bytes, or a constant."""
        for i, c in enumerate(self.clients):
            if c.eof:
                continue
            d = data_fn(i) if callable(data_fn) else data_fn
            c.sock.settimeout(5.0)
            c.send_text(d)

    def send_json_all(self, obj):
        self.send_all(json.dumps(obj, separators=(",", ":")))

    def pop_json(self, i):
        op, data = self.messages[i].pop(0)
        return json.loads(data.decode("utf-8"))

    def close_all(self):
        for c in self.clients:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError, OSError):
                pass
            c.abort()
        self.clients = []
        self.messages = []
        self.closed = []
        self.sel.close()
        self.sel = selectors.DefaultSelector()
