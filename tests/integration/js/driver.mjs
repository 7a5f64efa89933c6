// Drives one PushClient for tests/integration/test_js_client.py.
//
//   node driver.mjs PORT [OPTIONS_JSON]
//
// Connects to ws://127.0.0.1:PORT/ws with the given PushClient options (WebSocket is ws-node.mjs).
// Reads one JSON command per line on stdin, writes one JSON event per line on stdout; every
// event carries t, a millisecond timestamp (performance.now()).
//   {"cmd":"on","channel":C}                    -> {"ev":"message","channel","message"} per message
//   {"cmd":"off","channel":C}
//   {"cmd":"subscribe"|"unsubscribe","id":N,"channels":[...]}
//                                               -> {"ev":"resolved","id","value"} or
//                                                  {"ev":"rejected","id","code","message","channels"}
//   {"cmd":"stats"}                             -> {"ev":"stats", ...client.stats, "state"}
//   {"cmd":"close"}                             -> client.close()
//   {"cmd":"exit"}                              -> exits 0
// Client events are written as {"ev":"open"|"close"|"reconnecting"|"subscribed"|"pong"|"error",...}.
import readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import { PushClient } from '../../../clients/js/pushfabric.js';
import { WebSocket } from './ws-node.mjs';

const port = Number(process.argv[2]);
const options = JSON.parse(process.argv[3] || '{}');
const out = (obj) => process.stdout.write(`${JSON.stringify({ ...obj, t: performance.now() })}\n`);

const client = new PushClient(`ws://127.0.0.1:${port}/ws`, { ...options, WebSocket });

client.addEventListener('open', (e) => out({ ev: 'open', reconnect: e.reconnect }));
client.addEventListener('close', (e) => out({ ev: 'close', code: e.code, reason: e.reason, wasClean: e.wasClean }));
client.addEventListener('reconnecting', (e) => out({ ev: 'reconnecting', attempt: e.attempt, delay: e.delay, max: e.max }));
client.addEventListener('subscribed', (e) => out({ ev: 'subscribed', channels: e.channels }));
client.addEventListener('pong', () => out({ ev: 'pong' }));
client.addEventListener('error', (e) => out({ ev: 'error', code: e.error?.code, message: String(e.error?.message ?? e.error) }));

const handlers = new Map();

function run(c) {
  switch (c.cmd) {
    case 'on': {
      const h = (message, channel) => out({ ev: 'message', channel, message });
      handlers.set(c.channel, h);
      client.on(c.channel, h);
      break;
    }
    case 'off':
      client.off(c.channel, handlers.get(c.channel));
      break;
    case 'subscribe':
    case 'unsubscribe':
      client[c.cmd](c.channels).then(
        (value) => out({ ev: 'resolved', id: c.id, value }),
        (err) => out({ ev: 'rejected', id: c.id, code: err.code, message: err.message, channels: err.channels }));
      break;
    case 'stats':
      out({ ev: 'stats', ...client.stats, state: client.state, channels: client.channels });
      break;
    case 'close':
      client.close();
      break;
    case 'exit':
      process.exit(0);
      break;
    default:
      out({ ev: 'bad_command', cmd: c.cmd });
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) run(JSON.parse(line));
}).on('close', () => process.exit(0));

out({ ev: 'ready', node: process.version });
