// A minimal RFC 6455 WebSocket client for Node >= 18 (which has no global WebSocket), using only
// node:net and node:crypto. It implements the subset of the browser WebSocket API that
// clients/js/pushfabric.js uses: readyState, send(), close(), onopen/onmessage/onclose/onerror
// and addEventListener/removeEventListener. ws:// only; masked client frames; text and binary
// messages (fragmented ones reassembled); answers PING with PONG; close handshake.
import net from 'node:net';
import crypto from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_MESSAGE = 64 * 1024 * 1024;

function domError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

export class WebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url) {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw domError('SyntaxError', `ws-node: only ws:// URLs (${url})`);
    Object.assign(this, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    this.url = u.href;
    this.readyState = 0;
    this.protocol = '';
    this.extensions = '';
    this.bufferedAmount = 0;
    this.binaryType = 'nodebuffer';
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._listeners = new Map();
    this._buf = Buffer.alloc(0);
    this._frags = null; // [opcode, ...chunks] of a fragmented message
    this._closeSent = false;
    this._closeRcvd = null; // {code, reason}
    this._failed = null; // error that failed the connection
    this._key = crypto.randomBytes(16).toString('base64');

    const host = u.hostname.replace(/^\[|\]$/g, '');
    this._sock = net.connect({ host, port: Number(u.port) || 80 });
    this._sock.setNoDelay(true);
    this._sock.on('connect', () => {
      this._sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${this._key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    this._sock.on('data', (d) => this._onData(d));
    this._sock.on('error', (e) => { this._failed = this._failed || e; });
    this._sock.on('close', () => this._finish());
  }

  // ---- browser API ---------------------------------------------------------------------------

  send(data) {
    if (this.readyState === 0) throw domError('InvalidStateError', 'WebSocket is still CONNECTING');
    if (this.readyState !== 1) return; // browsers silently discard after close
    if (typeof data === 'string') this._frame(0x1, Buffer.from(data, 'utf8'));
    else this._frame(0x2, Buffer.from(data.buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data));
  }

  close(code, reason = '') {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw domError('InvalidAccessError', `close code ${code} may not be sent`);
    }
    const r = Buffer.from(String(reason), 'utf8');
    if (r.length > 123) throw domError('SyntaxError', 'close reason longer than 123 bytes');
    if (this.readyState >= 2) return;
    if (this.readyState === 0) {
      this._fail(new Error('closed before the connection was established'));
      return;
    }
    this.readyState = 2;
    let payload = Buffer.alloc(0);
    if (code !== undefined) {
      payload = Buffer.alloc(2 + r.length);
      payload.writeUInt16BE(code, 0);
      r.copy(payload, 2);
    }
    this._frame(0x8, payload);
    this._closeSent = true;
    // The server answers with its close and closes TCP; don't wait for ever if it does not.
    this._closeTimer = setTimeout(() => this._sock.destroy(), 5000);
  }

  addEventListener(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
  }

  removeEventListener(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  // ---- internals -----------------------------------------------------------------------------

  _dispatch(type, props = {}) {
    const ev = { type, target: this, ...props };
    const on = this[`on${type}`];
    if (typeof on === 'function') on.call(this, ev);
    for (const fn of [...(this._listeners.get(type) || [])]) fn.call(this, ev);
  }

  _frame(opcode, payload) {
    const len = payload.length;
    let head;
    if (len < 126) {
      head = Buffer.from([0x80 | opcode, 0x80 | len]);
    } else if (len < 65536) {
      head = Buffer.alloc(4);
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    } else {
      head = Buffer.alloc(10);
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 127;
      head.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
      head.writeUInt32BE(len >>> 0, 6);
    }
    const mask = crypto.randomBytes(4);
    const body = Buffer.alloc(len);
    for (let i = 0; i < len; i++) body[i] = payload[i] ^ mask[i & 3];
    this._sock.write(Buffer.concat([head, mask, body]));
  }

  // Fails the connection: no close handshake, error then close (1006) events.
  _fail(err) {
    this._failed = this._failed || err;
    this.readyState = 2;
    this._sock.destroy();
  }

  _finish() {
    if (this.readyState === 3) return;
    clearTimeout(this._closeTimer);
    this.readyState = 3;
    const clean = !!this._closeRcvd && this._closeSent && !this._failed;
    if (!clean) this._dispatch('error', { error: this._failed || new Error('connection closed abnormally') });
    this._dispatch('close', {
      code: clean ? this._closeRcvd.code : 1006,
      reason: clean ? this._closeRcvd.reason : '',
      wasClean: clean,
    });
  }

  _onData(chunk) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, chunk]) : chunk;
    if (this.readyState === 0 && !this._handshake()) return;
    while (this.readyState === 1 || this.readyState === 2) {
      if (!this._frameOne()) return;
    }
  }

  // Reads the 101 response; true once the connection is open.
  _handshake() {
    const end = this._buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this._buf.length > 16384) this._fail(new Error('handshake response too long'));
      return false;
    }
    const lines = this._buf.subarray(0, end).toString('latin1').split('\r\n');
    this._buf = this._buf.subarray(end + 4);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const accept = crypto.createHash('sha1').update(this._key + GUID).digest('base64');
    let why = null;
    if (!/^HTTP\/1\.1 101\b/.test(lines[0])) why = `handshake refused: ${lines[0]}`;
    else if ((headers.upgrade || '').toLowerCase() !== 'websocket') why = 'no Upgrade: websocket';
    else if (!/\bupgrade\b/i.test(headers.connection || '')) why = 'no Connection: Upgrade';
    else if (headers['sec-websocket-accept'] !== accept) why = 'bad Sec-WebSocket-Accept';
    else if (headers['sec-websocket-extensions']) why = 'unrequested extension';
    if (why) {
      this._fail(new Error(why));
      return false;
    }
    this.readyState = 1;
    this._dispatch('open');
    return this.readyState === 1;
  }

  // Parses and handles one frame from the buffer; false when more bytes are needed.
  _frameOne() {
    const b = this._buf;
    if (b.length < 2) return false;
    const fin = (b[0] & 0x80) !== 0;
    const opcode = b[0] & 0x0f;
    let len = b[1] & 0x7f;
    let off = 2;
    if (b[0] & 0x70 || b[1] & 0x80) return this._protocolError('RSV bits or a masked server frame');
    if (len === 126) {
      if (b.length < 4) return false;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return false;
      len = b.readUInt32BE(2) * 2 ** 32 + b.readUInt32BE(6);
      off = 10;
    }
    if (len > MAX_MESSAGE) return this._protocolError('frame too large');
    if (b.length < off + len) return false;
    const payload = b.subarray(off, off + len);
    this._buf = b.subarray(off + len);

    if (opcode >= 0x8) {
      if (!fin || len > 125) return this._protocolError('bad control frame');
      if (opcode === 0x8) this._onClose(payload);
      else if (opcode === 0x9) { if (!this._closeSent) this._frame(0xa, payload); }
      else if (opcode !== 0xa) return this._protocolError(`unknown opcode ${opcode}`);
      return true;
    }
    if (opcode === 0x0) {
      if (!this._frags) return this._protocolError('continuation with nothing to continue');
      this._frags.push(payload);
    } else if (opcode === 0x1 || opcode === 0x2) {
      if (this._frags) return this._protocolError('new message inside a fragmented one');
      this._frags = [opcode, payload];
    } else {
      return this._protocolError(`unknown opcode ${opcode}`);
    }
    if (fin) {
      const [op, ...parts] = this._frags;
      this._frags = null;
      const data = Buffer.concat(parts);
      let value = data;
      if (op === 0x1) {
        try {
          value = new TextDecoder('utf-8', { fatal: true }).decode(data);
        } catch (e) {
          return this._protocolError('invalid UTF-8', 1007);
        }
      }
      if (this.readyState === 1) this._dispatch('message', { data: value });
    }
    return true;
  }

  _onClose(payload) {
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    this._closeRcvd = { code, reason: payload.subarray(2).toString('utf8') };
    if (!this._closeSent) { // echo the server's close (RFC 6455 §5.5.1)
      this.readyState = 2;
      this._frame(0x8, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0));
      this._closeSent = true;
    }
    this._sock.end();
    this._buf = Buffer.alloc(0);
    this.readyState = 2;
  }

  _protocolError(why, code = 1002) {
    if (!this._closeSent && this.readyState === 1) {
      const p = Buffer.alloc(2);
      p.writeUInt16BE(code, 0);
      this._frame(0x8, p);
      this._closeSent = true;
    }
    this._failed = this._failed || new Error(`WebSocket protocol error: ${why}`);
    this.readyState = 2;
    this._sock.end(); // flushes our close frame
    this._closeTimer = setTimeout(() => this._sock.destroy(), 1000);
    return false;
  }
}

export default WebSocket;
