// k6 load test for chatd: virtual users log in with dev login, open a
// websocket each, join one of CHANNELS channels, send messages at a set rate
// and measure how long each message takes from send to delivery.
//
// Against the docker compose stack (dev login is on there by default):
//
//   docker compose up --build -d
//   k6 run -e BASE_URL=http://localhost:8080 -e VUS=200 -e DURATION=2m deploy/k6/chat.js
//
// Settings (all optional, with -e NAME=value):
//   BASE_URL      the chat's URL                          http://localhost:8080
//   VUS           virtual users, one websocket each       50
//   DURATION      how long the test runs                  1m
//   SESSION       how long one websocket stays open       30s
//   CHANNELS      channels the users are spread over      10
//   RATE          messages per second per user            1
//   SIZE          pad each message's text to this many    0 (no padding)
//                 bytes (at most CHAT_MAX_MESSAGE_BYTES)
//   USER_PREFIX   prefix of the dev-login user names      k6
//   CHANNEL_PREFIX prefix of the channel names            k6
//                 (both: a-z 0-9 _ -, any case; the server
//                 lower-cases names, so the script does too)
//   GRACE         wait for outstanding deliveries before  3s
//                 closing a websocket
//
// Each message's text carries its send time (milliseconds since the epoch);
// every member that receives it records now - send time in the trend
// chat_delivery_latency, so k6 and the server must share a clock: run k6 on
// the machine that runs the stack, or on one synced by NTP.
// Keep RATE under the server's CHAT_RATE_LIMIT (20 per second by default):
// a message the server refuses with rate_limited is counted in
// chat_rate_limited, not as lost (it never entered the chat).
//
// The script speaks only the protocol of docs/protocol.md: POST
// /auth/dev/login with a JSON body, GET /ws with a Bearer token, command
// create and join, message to a channel (each with an id, so that a refusal
// names the message it refuses).

import http from 'k6/http';
import ws from 'k6/ws';
import { check, fail } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');
const WS_URL = BASE_URL.replace(/^http/, 'ws') + '/ws';
const VUS = int(__ENV.VUS, 50);
const DURATION = __ENV.DURATION || '1m';
const SESSION_MS = seconds(__ENV.SESSION || '30s') * 1000;
const CHANNELS = int(__ENV.CHANNELS, 10);
const RATE = Number(__ENV.RATE || 1);
const SIZE = parseInt(__ENV.SIZE || '0', 10) || 0;
const USER_PREFIX = namePart('USER_PREFIX', __ENV.USER_PREFIX || 'k6');
const CHANNEL_PREFIX = namePart('CHANNEL_PREFIX', __ENV.CHANNEL_PREFIX || 'k6');
const GRACE_MS = seconds(__ENV.GRACE || '3s') * 1000;

// Marks the messages this script sends, so other traffic is not measured.
const MARK = 'k6ts:';
// Tells this run's message ids from an earlier run's: the server keeps a
// user's message ids for a while to drop retries (docs/protocol.md), and a
// new run logs in as the same users.
const RUN = Date.now().toString(36);

const deliveryLatency = new Trend('chat_delivery_latency', true);
const ownDelivered = new Rate('chat_own_delivered');
const sent = new Counter('chat_messages_sent');
const received = new Counter('chat_messages_received');
const serverErrors = new Counter('chat_errors');
const rateLimited = new Counter('chat_rate_limited');

export const options = {
  scenarios: {
    chat: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: Math.ceil((SESSION_MS + GRACE_MS) / 1000) + 10 + 's',
    },
  },
  thresholds: {
    chat_delivery_latency: ['p(95)<250', 'p(99)<1000'],
    chat_own_delivered: ['rate>0.999'],
    chat_errors: ['count<1'],
    checks: ['rate>0.99'],
  },
};

// namePart lower-cases a prefix of user or channel names, as the server
// does with names (so that the script finds its channels in what the server
// sends back), and stops the test at once on a character no name may have.
function namePart(setting, v) {
  const part = String(v).toLowerCase();
  if (!/^[a-z0-9_-]{1,20}$/.test(part)) {
    throw new Error(`${setting}=${v}: use 1 to 20 characters of a-z 0-9 _ -`);
  }
  return part;
}

// The names of the users and channels: `#<prefix>-<n>`, `<prefix>-<vu>`.
function channelName(n) {
  return `#${CHANNEL_PREFIX}-${n}`;
}

function userName(vu) {
  return `${USER_PREFIX}-${vu}`;
}

function int(v, def) {
  const n = parseInt(v, 10);
  return Number.isFinite(n) && n > 0 ? n : def;
}

// seconds parses "30s", "2m", "500ms" or a plain number of seconds.
function seconds(v) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(v).trim());
  if (!m) fail(`bad duration ${v}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || 's'];
}

// One token per VU, kept across iterations: dev login of the same name is the
// same user.
let token = null;

function login() {
  const username = userName(__VU);
  const res = http.post(`${BASE_URL}/auth/dev/login`, JSON.stringify({ username }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'dev_login' },
  });
  const ok = check(res, {
    'dev login 200': (r) => r.status === 200,
    'dev login gives a token': (r) => r.status === 200 && typeof r.json('token') === 'string',
  });
  if (!ok) fail(`dev login as ${username}: HTTP ${res.status} ${res.body}`);
  return res.json('token');
}

export default function () {
  if (token === null) token = login();
  const channel = channelName((__VU - 1) % CHANNELS);

  // This iteration's mark in its messages, and seq -> send time of its own
  // messages not yet delivered back to it.
  const me = `${__VU}.${__ITER}`;
  const pending = new Map();
  let seq = 0;
  let welcomed = false;
  let joined = false;
  let stopped = false;

  const res = ws.connect(WS_URL, { headers: { Authorization: `Bearer ${token}` }, tags: { name: 'ws' } }, (socket) => {
    const send = (frame) => socket.send(JSON.stringify(frame));

    socket.on('message', (data) => {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (e) {
        check(data, { 'frame is JSON': () => false });
        return;
      }
      switch (frame.type) {
        case 'welcome':
          welcomed = true;
          check(frame, {
            'welcome lists channels': (f) => Array.isArray(f.channels) && Array.isArray(f.joined),
          });
          // Create the channel if nobody has yet (already_exists is fine),
          // then join it; the join's ack starts the sending.
          send({ type: 'command', action: 'create', target: channel, id: 'create' });
          send({ type: 'command', action: 'join', target: channel, id: 'join' });
          break;
        case 'ack':
          if (frame.id === 'join' && !joined && !stopped) {
            joined = true;
            startSending();
          }
          break;
        case 'error':
          if (frame.code === 'already_exists' && frame.id === 'create') break;
          if (frame.code === 'rate_limited') {
            // Refused, so never sent to anyone: not lost.
            rateLimited.add(1);
            const n = ownSeq(frame.id);
            if (n !== null) pending.delete(n);
            break;
          }
          serverErrors.add(1, { code: String(frame.code) });
          console.warn(`VU ${__VU}: error ${frame.code}: ${frame.message}`);
          break;
        case 'message':
          onMessage(frame);
          break;
        default:
          // event frames (joins, leaves, creates) are not measured.
          break;
      }
    });

    function onMessage(frame) {
      if (frame.target !== channel || typeof frame.message !== 'string') return;
      if (!frame.message.startsWith(MARK)) return;
      // Text: "k6ts:<send ms> <vu>.<iteration>:<seq> hello from k6 <padding>".
      const parts = frame.message.split(' ');
      const sentAt = Number(parts[0].slice(MARK.length));
      if (!Number.isFinite(sentAt)) return;
      received.add(1);
      deliveryLatency.add(Date.now() - sentAt);
      const [vu, n] = (parts[1] || '').split(':');
      if (vu === me && pending.has(n)) {
        pending.delete(n);
        ownDelivered.add(true);
      }
    }

    // ownSeq is the seq of this iteration's message with that id, or null.
    function ownSeq(id) {
      const prefix = `${RUN}.${__ITER}.`;
      return typeof id === 'string' && id.startsWith(prefix) ? id.slice(prefix.length) : null;
    }

    function startSending() {
      const interval = Math.max(1, Math.round(1000 / RATE));
      socket.setInterval(() => {
        if (stopped) return;
        seq++;
        const now = Date.now();
        pending.set(String(seq), now);
        let text = `${MARK}${now} ${me}:${seq} hello from k6`;
        if (text.length < SIZE) text += ' ' + 'x'.repeat(SIZE - text.length - 1);
        send({ type: 'message', target: channel, message: text, id: `${RUN}.${__ITER}.${seq}` });
        sent.add(1);
      }, interval);
    }

    // Stop after SESSION; wait GRACE for the last deliveries, then close.
    socket.setTimeout(() => {
      stopped = true;
      socket.setTimeout(() => socket.close(1000), GRACE_MS);
    }, SESSION_MS);

    socket.on('close', () => {
      // What did not come back by now is counted as lost.
      pending.forEach(() => ownDelivered.add(false));
      pending.clear();
    });

    socket.on('error', (e) => {
      if (e.error() !== 'websocket: close sent') console.warn(`VU ${__VU}: websocket error: ${e.error()}`);
    });
  });

  check(res, { 'websocket upgrade 101': (r) => r && r.status === 101 });
  check(welcomed, { 'welcome received': (w) => w === true });
}
