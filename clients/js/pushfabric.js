// pushfabric.js — a small client for the pushfabric gateway (see docs/PROTOCOL.md).
//
// ES module, no dependencies; runs in browsers and in Node >= 18. Node < 22 has no global
// WebSocket: pass one as options.WebSocket (any implementation of the browser API).
//
//   import { PushClient } from './pushfabric.js';
//   const c = new PushClient('ws://127.0.0.1:8080/ws', { channels: ['news'] });
//   c.on('news', (message, channel) => console.log(channel, message));
//   await c.subscribe(['alerts']);
//
// What it does for you:
//   - unpacks batches ({"channel","messages":[...]}) into one handler call per message, in order;
//   - subscribe()/unsubscribe() return Promises settled by the gateway's ack or error;
//   - reconnects after any unexpected close with jittered exponential backoff and resubscribes
//     every channel it holds;
//   - sends {"op":"ping"} when nothing arrived for idlePingMs and treats a missing answer within
//     pongTimeoutMs as a dead connection (drops it and reconnects).
//
// Requests are sent one at a time: the gateway's replies carry no request id and a subscribe ack
// may wait for Redis, so only one outstanding request makes every ack and error unambiguous.

const OPEN = 1; // WebSocket.OPEN, the same in every implementation

/** An error reply of the gateway (`code` as in docs/PROTOCOL.md §3) or of this client
 *  (`closed`: the client was closed; `pong_timeout`: the connection was found dead). */
export class PushError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'PushError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

export class PushClient {
  /**
   * @param {string} url  ws:// or wss:// URL of the gateway's /ws endpoint
   * @param {object} [options]
   * @param {string[]} [options.channels]  channels to subscribe on connect
   * @param {Function} [options.WebSocket]  WebSocket constructor (default: globalThis.WebSocket)
   * @param {{min?:number,max?:number}} [options.backoff]  reconnect delays in ms (default 500, 30000)
   * @param {number} [options.idlePingMs]  ping after this long without a message (default 30000; 0: never)
   * @param {number} [options.pongTimeoutMs]  no answer to a ping within this: dead (default 10000)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('PushClient: no WebSocket implementation; pass options.WebSocket (Node < 22 has none)');
    }
    const backoff = options.backoff || {};
    this.backoff = { min: backoff.min ?? 500, max: backoff.max ?? 30000 };
    this.idlePingMs = options.idlePingMs ?? 30000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 10000;
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'connecting';
    /** Counters, for monitoring and tests. */
    this.stats = { opens: 0, reconnects: 0, batches: 0, messages: 0, pings: 0, pongs: 0 };

    this._channels = new Set(); // channels the gateway has acknowledged (resubscribed on reconnect)
    this._handlers = new Map(); // channel (or '*') -> Set of handlers
    this._listeners = new Map(); // event type -> Set of listeners
    this._queue = []; // requests waiting to be sent
    this._inflight = null; // the request sent and not yet answered
    this._ws = null;
    this._attempt = 0;
    this._closed = false;
    this._retryTimer = this._idleTimer = this._pongTimer = null;

    const initial = options.channels || [];
    if (initial.length) this._enqueue('subscribe', [...initial], null);
    this._connect();
  }

  // ---- messages ------------------------------------------------------------------------------

  /** Calls handler(message, channel) for every message of `channel` ('*': of every channel). */
  on(channel, handler) {
    if (!this._handlers.has(channel)) this._handlers.set(channel, new Set());
    this._handlers.get(channel).add(handler);
    return this;
  }

  /** Removes a handler added with on(); without handler, all of that channel's handlers. */
  off(channel, handler) {
    const set = this._handlers.get(channel);
    if (set && handler) set.delete(handler);
    if (set && (!handler || set.size === 0)) this._handlers.delete(channel);
    return this;
  }

  /** Subscribes; resolves with the acknowledged channels once the gateway (and Redis) confirmed
   *  them, so every message published after that is delivered. Rejects with a PushError whose
   *  code is the gateway's (bad_channel, too_many_channels, subscribe_failed, ...). Channels are
   *  kept across reconnects; if the connection is down the request waits for the next one. */
  subscribe(channels) {
    return this._request('subscribe', channels);
  }

  /** Unsubscribes; messages of those channels stop at once (the ack resolves the Promise). */
  unsubscribe(channels) {
    const names = typeof channels === 'string' ? [channels] : channels;
    if (Array.isArray(names)) names.forEach((n) => this._channels.delete(n));
    return this._request('unsubscribe', channels);
  }

  /** The channels the client holds (acknowledged by the gateway). */
  get channels() {
    return [...this._channels];
  }

  /** Closes the connection for good: no reconnect; pending requests reject with code 'closed'. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._stopTimers();
    clearTimeout(this._retryTimer);
    const err = () => new PushError('closed', 'PushClient closed');
    for (const r of this._inflight ? [this._inflight, ...this._queue] : this._queue) r.reject?.(err());
    this._inflight = null;
    this._queue = [];
    const ws = this._ws;
    if (ws) {
      try { ws.close(1000, 'client closed'); } catch (e) { /* already closing */ }
    } else {
      this._setState('closed');
    }
    // The socket's close event (if any) emits 'close' and sets the state to 'closed'.
  }

  // ---- events --------------------------------------------------------------------------------
  //   open          {reconnect}                 connected (reconnect: not the first time)
  //   subscribed    {channels}                  a subscribe ack, resubscription included
  //   close         {code, reason, wasClean}    the connection ended (close() included)
  //   reconnecting  {attempt, delay, max}       next attempt in `delay` ms, in [max/2, max]
  //   pong          {}                          an answer to our ping
  //   error         {error}                     a PushError, a socket error or a handler's throw

  addEventListener(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
  }

  removeEventListener(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  _emit(type, detail = {}) {
    const ev = { type, target: this, ...detail };
    const set = this._listeners.get(type);
    if (type === 'error' && !(set && set.size)) console.warn('pushfabric:', ev.error);
    for (const fn of set ? [...set] : []) {
      try { fn(ev); } catch (e) { if (type !== 'error') this._emit('error', { error: e }); }
    }
  }

  _setState(state) {
    this.state = state;
  }

  // ---- requests ------------------------------------------------------------------------------

  _request(op, channels) {
    const names = typeof channels === 'string' ? [channels] : channels;
    if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === 'string')) {
      return Promise.reject(new TypeError(`${op}: channels must be a non-empty array of strings`));
    }
    if (this._closed) return Promise.reject(new PushError('closed', 'PushClient closed'));
    return new Promise((resolve, reject) => this._enqueue(op, [...names], { resolve, reject }));
  }

  _enqueue(op, channels, promise) {
    this._queue.push({ op, channels, resolve: promise?.resolve, reject: promise?.reject, failed: [] });
    this._pump();
  }

  // Sends the next request when none is outstanding.
  _pump() {
    if (this._inflight || !this._queue.length || !this._ws || this._ws.readyState !== OPEN) return;
    this._inflight = this._queue.shift();
    this._inflight.failed = [];
    this._send({ op: this._inflight.op, channels: this._inflight.channels });
  }

  _send(obj) {
    this._ws.send(JSON.stringify(obj));
  }

  _onAck(m) {
    const req = this._inflight;
    if (!req || `${req.op}d` !== m.op) return; // not ours (e.g. a ?channels= URL): ignore
    this._inflight = null;
    const acked = Array.isArray(m.channels) ? m.channels : [];
    if (m.op === 'subscribed') {
      acked.forEach((n) => this._channels.add(n));
      const refused = req.channels.filter((n) => !acked.includes(n));
      if (refused.length) {
        const msg = req.failed.length ? req.failed[0].message : `not subscribed: ${refused.join(', ')}`;
        this._fail(req, new PushError('subscribe_failed', msg, { channels: refused, subscribed: acked }));
      } else {
        // subscribe_failed errors that did not concern this request (a channel lost on the gateway)
        req.failed.forEach((e) => this._emit('error', { error: new PushError(e.code, e.message) }));
        req.resolve?.(acked);
      }
      this._emit('subscribed', { channels: acked });
    } else {
      acked.forEach((n) => this._channels.delete(n));
      req.resolve?.(acked);
    }
    this._pump();
  }

  _onError(m) {
    const req = this._inflight;
    if (req && req.op === 'subscribe' && m.code === 'subscribe_failed') {
      req.failed.push(m); // the ack that follows tells which channels were refused
    } else if (req) { // any other error answers the request outstanding: it had no effect
      this._inflight = null;
      this._fail(req, new PushError(m.code, m.message, { channels: req.channels }));
      this._pump();
    } else {
      this._emit('error', { error: new PushError(m.code, m.message) });
    }
  }

  _fail(req, err) {
    if (req.reject) req.reject(err);
    else this._emit('error', { error: err }); // the client's own (re)subscription
  }

  // ---- connection ----------------------------------------------------------------------------

  _connect() {
    this._retryTimer = null;
    if (this._closed) return;
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this._emit('error', { error: e });
      this._reconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen();
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onerror = (ev) => this._closed || this._emit('error', { error: ev.error || new Error(`WebSocket error on ${this.url}`) });
    ws.onclose = (ev) => this._onClose(ev.code, ev.reason, ev.wasClean);
  }

  _onOpen() {
    this._attempt = 0;
    this.stats.opens++;
    if (this.stats.opens > 1) this.stats.reconnects++;
    this._setState('open');
    // Resubscribe what the gateway had acknowledged; requests not answered yet are sent again.
    if (this._channels.size) this._queue.unshift({ op: 'subscribe', channels: [...this._channels], failed: [], resub: true });
    this._emit('open', { reconnect: this.stats.opens > 1 });
    this._alive();
    this._pump();
  }

  _onMessage(data) {
    this._alive();
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      this._emit('error', { error: new PushError('bad_message', `not JSON from the gateway: ${String(data).slice(0, 80)}`) });
      return;
    }
    if (m === null || typeof m !== 'object') return;
    if (m.op === undefined) {
      if (typeof m.channel === 'string' && Array.isArray(m.messages)) this._onBatch(m.channel, m.messages);
    } else if (m.op === 'subscribed' || m.op === 'unsubscribed') {
      this._onAck(m);
    } else if (m.op === 'error') {
      this._onError(m);
    } else if (m.op === 'pong') {
      this.stats.pongs++;
      this._emit('pong');
    } // other ops: ignored, as the protocol asks
  }

  _onBatch(channel, messages) {
    if (!this._channels.has(channel)) return; // unsubscribed meanwhile
    this.stats.batches++;
    const handlers = [...(this._handlers.get(channel) || []), ...(this._handlers.get('*') || [])];
    for (const msg of messages) {
      this.stats.messages++;
      for (const h of handlers) {
        try { h(msg, channel); } catch (e) { this._emit('error', { error: e }); }
      }
    }
  }

  _onClose(code, reason, wasClean) {
    this._stopTimers();
    this._ws = null;
    // The outstanding request goes back to the front; the client's own resubscription is
    // rebuilt on the next open.
    if (this._inflight) this._queue.unshift(this._inflight);
    this._inflight = null;
    this._queue = this._queue.filter((r) => !r.resub);
    this._emit('close', { code, reason, wasClean });
    if (this._closed) this._setState('closed');
    else this._reconnect();
  }

  // Jittered exponential backoff: a random delay in [d/2, d], d = min * 2^attempt capped at max.
  _reconnect() {
    const d = Math.min(this.backoff.max, this.backoff.min * 2 ** this._attempt);
    const delay = d / 2 + Math.random() * (d / 2);
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delay, max: d });
    this._attempt++;
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  // ---- liveness ------------------------------------------------------------------------------

  // Something arrived: the connection is alive; ping again after idlePingMs of silence.
  _alive() {
    this._stopTimers();
    if (this.idlePingMs > 0 && !this._closed) this._idleTimer = setTimeout(() => this._ping(), this.idlePingMs);
  }

  _ping() {
    this._idleTimer = null;
    if (!this._ws || this._ws.readyState !== OPEN) return;
    this._send({ op: 'ping' });
    this.stats.pings++;
    this._pongTimer = setTimeout(() => this._dead(), this.pongTimeoutMs);
  }

  // No answer to the ping: drop the socket without waiting for a close handshake, and reconnect.
  _dead() {
    this._pongTimer = null;
    const ws = this._ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(4000, 'pong timeout'); } catch (e) { /* ignore */ }
    this._emit('error', { error: new PushError('pong_timeout', `no answer to a ping within ${this.pongTimeoutMs} ms`) });
    this._onClose(4000, 'pong timeout', false);
  }

  _stopTimers() {
    clearTimeout(this._idleTimer);
    clearTimeout(this._pongTimer);
    this._idleTimer = this._pongTimer = null;
  }
}

export default PushClient;
