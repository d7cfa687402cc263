// chat-client.js: a client for chatd's websocket protocol (docs/protocol.md,
// v2), in one ES module with no dependencies. The web client uses it; so can
// a page on another origin, a bot or a test (docs/clients.md).
//
// What it does for its caller:
//   - connects with the browser's session cookie, or with a token where the
//     WebSocket implementation can send headers (Node's `ws`, Deno, Bun);
//   - sends requests with ids unique for the user (a random prefix per
//     client) and settles each one on its answer: the ack (a message's seq),
//     the history page, or a ChatError carrying the protocol's code;
//   - comes back after a drop or a 1001 with jittered exponential backoff;
//   - resumes after a reconnect from the welcome's `latest` (spec 5): every
//     target whose newest seq moved past the last one delivered is read
//     with `history` `after` it, and each message is delivered once, in seq
//     order, live or read back (cached seqs are dropped on a new epoch);
//   - resends, with the same id, messages that were sent but not answered
//     when the connection went, so a lost ack never makes a duplicate;
//   - tells what happens as typed events (`on(type, fn)`).
//
// Events (`client.on(type, fn)`, fn gets the detail; or addEventListener,
// where event.detail is the same):
//   state      {state, retryAt, code, reason}: 'idle', 'connecting', 'online',
//              'waiting' (dropped; next try at retryAt), 'ended' (closed for
//              good: code 1000 logged out, 1008 refused, 4401 not signed
//              in, 4000 closed by the caller)
//   welcome    {frame, reconnected, epochChanged}: the lists, on every connect
//   message    a message frame (type, target, identifier, username, message,
//              ts, seq) plus `conversation` (the target as this user names
//              it: "@bob" for a private message from bob) and `resumed`
//              (read back from history after a reconnect)
//   event      any event frame (emitter, event, identifier, target, …; a
//              participant's event also has `conversation`, as a message);
//              it is also emitted under its own name: create, destroy,
//              join, left, online, offline, typing, read
//   resumed    {counts}: the catch-up after a reconnect is done; counts maps
//              each target to the number of messages read back
//   gap        {target, from, to}: seqs that could not be delivered (gone
//              from history, or more than maxResume behind)
//   error      a ChatError the server sent without a request waiting for it

/** The protocol's error codes (spec 3.4), and the client's own. */
export const Codes = Object.freeze({
  RATE_LIMITED: 'rate_limited',
  BAD_REQUEST: 'bad_request',
  INVALID_TARGET: 'invalid_target',
  INVALID_MESSAGE: 'invalid_message',
  NOT_FOUND: 'not_found',
  ALREADY_EXISTS: 'already_exists',
  FORBIDDEN: 'forbidden',
  NOT_MEMBER: 'not_member',
  UNAVAILABLE: 'unavailable',
  INTERNAL: 'internal',
  // The client's own: not connected when the request was made (and not a
  // message, which waits), the connection went before the answer (and the
  // request could not be resent), the client was closed.
  OFFLINE: 'offline',
  DISCONNECTED: 'disconnected',
  CLOSED: 'closed',
});

/** A failed request: code is one of Codes, request the frame that was sent. */
export class ChatError extends Error {
  constructor(code, message, request = null) {
    super(message || code);
    this.name = 'ChatError';
    this.code = code;
    this.request = request;
  }
}

/** Backoff before try number attempt (0-based): equal jitter, base doubling up to cap (ms). */
export function backoff(attempt, rand = Math.random, base = 500, cap = 30000) {
  const ceil = Math.min(cap, base * 2 ** Math.min(attempt, 16));
  return ceil / 2 + rand() * (ceil / 2);
}

/**
 * The websocket URL for where: a ws: or wss: URL as it is; an http(s) URL
 * or origin becomes ws(s) with the path /ws when it has none; nothing (in
 * a browser) is this page's own origin.
 */
export function socketURL(where) {
  if (where === undefined || where === null || where === '') {
    if (typeof location === 'undefined') throw new TypeError('chat-client: a URL is needed outside a browser');
    where = location.origin;
  }
  const u = new URL(String(where), typeof location === 'undefined' ? undefined : location.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`chat-client: not a websocket URL: ${where}`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u.href;
}

/**
 * The conversation a message belongs to, as user me names it: a channel
 * is itself; a private message is "@" + the other party (the target for
 * my own messages, the sender for the other's; spec 5, reading 19).
 */
export function conversationOf(frame, me) {
  const t = frame.target;
  if (typeof t !== 'string' || !t.startsWith('@')) return t;
  if (me && frame.identifier === me.identifier) return t;
  return '@' + frame.username;
}

/** Twelve random hex digits: the prefix that makes this client's request ids unique for the user. */
function randomPrefix() {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const OPEN = 1; // WebSocket.OPEN

export class ChatClient extends EventTarget {
  /**
   * @param {string} [url] the server (https://chat.example.com) or its
   *   websocket (wss://chat.example.com/ws); in a browser, default this page's origin
   * @param {object} [opts]
   * @param {string} [opts.token] a session token (POST /auth/dev/login's, or
   *   the cookie's value), sent as Authorization: Bearer. Not in a browser:
   *   a browser's WebSocket cannot send headers; there the cookie is the way
   * @param {Function} [opts.WebSocket] the WebSocket class (default the
   *   global one); with a token it is called as new WebSocket(url, {headers})
   * @param {() => Promise<boolean|null>} [opts.signedIn] asked when a socket
   *   fails before its welcome (a refused upgrade looks like any other
   *   failure to a browser): false ends the client with code 4401
   * @param {number} [opts.backoffBase] first backoff ceiling in ms (default 500)
   * @param {number} [opts.backoffCap] largest backoff in ms (default 30000)
   * @param {number} [opts.maxResume] most messages read back per target on a
   *   resume (default 1000); older ones are reported as a gap
   * @param {number} [opts.resendWindow] ms after its first send within which an
   *   unanswered message is resent after a reconnect (default 4 minutes: the
   *   server knows a message's id for 5)
   */
  constructor(url, opts = {}) {
    super();
    this.url = socketURL(url);
    this.opts = { backoffBase: 500, backoffCap: 30000, maxResume: 1000, resendWindow: 4 * 60 * 1000, ...opts };
    if (this.opts.token && typeof document !== 'undefined' && !this.opts.WebSocket) {
      throw new TypeError('chat-client: a browser WebSocket cannot send a token; sign in so that the session cookie is sent (docs/clients.md)');
    }
    /** 'idle' | 'connecting' | 'online' | 'waiting' | 'ended' */
    this.state = 'idle';
    /** the last welcome frame */
    this.welcome = null;
    /** {identifier, username} from the welcome */
    this.me = null;
    /** true once any socket of this client was welcomed */
    this.welcomed = false;
    this.retryAt = 0;
    this.lastDrop = null; // {code, reason} of the last drop
    this.endCode = 0;
    this.endReason = '';
    this.idPrefix = randomPrefix();
    this.nextId = 0;

    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.closed = false;
    this.epoch = undefined;
    this.pending = new Map(); // id -> {frame, resolve, reject, message, firstSent}; in send order
    this.last = new Map(); // target -> the highest seq delivered
    this.holding = new Map(); // target -> live messages held while it catches up
  }

  // ------------------------------------------------------------ lifetime

  /** Opens the connection (and keeps it open until close). Returns this. */
  connect() {
    if (this.state !== 'idle' && this.state !== 'ended') return this;
    this.closed = false;
    this.open();
    return this;
  }

  /** Closes for good: no reconnect; waiting requests fail with 'closed'. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'bye');
    this.failPending(Codes.CLOSED, 'the client was closed', true);
    this.end(4000, 'closed');
  }

  /** Tries at once instead of waiting out the backoff (a Retry button, the browser coming online). */
  retryNow() {
    if (this.closed) return;
    if (this.state === 'waiting' || (this.state === 'ended' && this.endCode === 1008)) {
      clearTimeout(this.timer);
      this.open();
    }
  }

  // ------------------------------------------------------------ requests

  /** A fresh request id, unique for the user (for a retry, pass one back to send). */
  newId() {
    return `${this.idPrefix}.${++this.nextId}`;
  }

  /**
   * Sends a message; resolves with its seq once stored. While offline it
   * waits for the connection; when the connection goes before the answer
   * it is resent with the same id, so it is stored at most once.
   * opts.id: the id of an earlier try (after 'unavailable'), to retry it.
   */
  send(target, text, { id } = {}) {
    const frame = { type: 'message', target, message: text, id: id || this.newId() };
    return this.request(frame, { message: true }).then((ack) => ack.seq);
  }

  create(channel) {
    return this.command('create', channel);
  }

  destroy(channel) {
    return this.command('destroy', channel);
  }

  join(channel) {
    return this.command('join', channel);
  }

  leave(channel) {
    return this.command('leave', channel);
  }

  /**
   * A page of stored messages of target (spec 5): {target, first, messages,
   * more}. opts: before (newest ones below it), after (oldest ones above
   * it), limit (1 to 200, default 50). Each message carries `conversation`.
   */
  async history(target, { before, after, limit } = {}) {
    const frame = { type: 'command', action: 'history', target };
    if (before !== undefined) frame.before = before;
    if (after !== undefined) frame.after = after;
    if (limit !== undefined) frame.limit = limit;
    const page = await this.request(frame);
    const messages = Array.isArray(page.messages) ? page.messages : [];
    return {
      target: page.target,
      first: page.first,
      more: !!page.more,
      messages: messages.map((m) => ({ ...m, conversation: conversationOf(m, this.me) })),
    };
  }

  /**
   * A page of a channel's members, by username (spec 6): {target, members:
   * [{identifier, username, online}], more}. opts: after (a username),
   * limit (1 to 1000, default 1000).
   */
  async members(channel, { after, limit } = {}) {
    const extra = {};
    if (after !== undefined) extra.after = after;
    if (limit !== undefined) extra.limit = limit;
    const page = await this.request({ type: 'command', action: 'members', target: channel, ...extra });
    return { target: page.target, members: Array.isArray(page.members) ? page.members : [], more: !!page.more };
  }

  /** Every member of a channel: members() page after page. */
  async allMembers(channel) {
    const all = [];
    let after;
    for (;;) {
      const page = await this.members(channel, after === undefined ? {} : { after });
      all.push(...page.members);
      if (!page.more || page.members.length === 0) return all;
      after = page.members[page.members.length - 1].username;
    }
  }

  /**
   * Tells the other members (the peer, for @user) that this user is typing
   * (spec 6). The server tells it at most once every 3 s per user and
   * target; call it as the person types, as often as you like.
   */
  typing(target) {
    return this.command('typing', target);
  }

  /**
   * Moves this user's read marker of target up to seq (spec 7); a lower one
   * changes nothing. Every session of the user gets a `read` event.
   */
  read(target, seq) {
    return this.command('read', target, { seq });
  }

  command(action, target, extra = {}) {
    return this.request({ type: 'command', action, target, ...extra }).then(() => undefined);
  }

  /**
   * Sends any request frame (an id is added) and settles on its answer:
   * resolves with the ack (or the frame that replaces it, e.g. history),
   * rejects with a ChatError. Not connected: 'offline', unless it is a
   * message (opts.message), which waits for the connection.
   */
  request(frame, { message = false } = {}) {
    if (this.closed) return Promise.reject(new ChatError(Codes.CLOSED, 'the client was closed', frame));
    if (this.state === 'ended' || (!message && this.state !== 'online')) return Promise.reject(new ChatError(Codes.OFFLINE, 'not connected', frame));
    const f = frame.id ? frame : { ...frame, id: this.newId() };
    return new Promise((resolve, reject) => {
      const p = { frame: f, resolve, reject, message, firstSent: 0 };
      this.pending.set(f.id, p);
      if (this.state === 'online') this.write(p);
    });
  }

  write(p) {
    if (!p.firstSent) p.firstSent = Date.now();
    this.ws.send(JSON.stringify(p.frame));
  }

  // ------------------------------------------------------------ events

  /** Calls fn(detail) for every event of type; returns a function that unsubscribes. */
  on(type, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ------------------------------------------------------------ the socket

  open() {
    this.setState('connecting');
    let ws;
    try {
      const WS = this.opts.WebSocket || globalThis.WebSocket;
      if (typeof WS !== 'function') throw new TypeError('no WebSocket implementation: pass opts.WebSocket');
      ws = this.opts.token ? new WS(this.url, { headers: { Authorization: `Bearer ${this.opts.token}` } }) : new WS(this.url);
    } catch (e) {
      this.dropped(1006, String(e && e.message ? e.message : e), false);
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let f;
      try {
        f = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (f === null || typeof f !== 'object') return;
      if (f.type === 'welcome') {
        welcomed = true;
        this.onWelcome(f);
      } else {
        this.onFrame(f);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.dropped(ev.code, ev.reason, welcomed);
    };
    // An error is followed by a close; nothing to do here, but a listener
    // keeps Node's `ws` from throwing it.
    ws.onerror = () => {};
  }

  async dropped(code, reason, welcomed) {
    this.failPending(Codes.DISCONNECTED, 'the connection was lost before the answer', false);
    // Messages held for a catch-up are read back on the next one.
    this.holding.clear();
    if (this.closed) return;
    this.lastDrop = { code, reason };
    if (code === 1000 || code === 1008) {
      // 1000: logged out (here or elsewhere); 1008: fell behind, or the
      // session expired. Coming back by itself would not help.
      this.failPending(Codes.DISCONNECTED, 'the connection was closed', true);
      this.end(code, reason);
      return;
    }
    if (!welcomed && this.opts.signedIn) {
      this.setState('connecting');
      const ok = await Promise.resolve()
        .then(() => this.opts.signedIn())
        .catch(() => null);
      if (this.closed) return;
      if (ok === false) {
        this.failPending(Codes.DISCONNECTED, 'not signed in', true);
        this.end(4401, 'not signed in');
        return;
      }
    }
    const delay = backoff(this.attempt++, Math.random, this.opts.backoffBase, this.opts.backoffCap);
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    this.timer = setTimeout(() => this.open(), delay);
  }

  end(code, reason) {
    this.endCode = code;
    this.endReason = reason || '';
    this.setState('ended');
  }

  /**
   * Rejects the requests waiting for an answer. Messages stay to be resent
   * on the next connection unless all is set.
   */
  failPending(code, words, all) {
    for (const [id, p] of this.pending) {
      if (p.message && !all) continue;
      this.pending.delete(id);
      p.reject(new ChatError(code, words, p.frame));
    }
  }

  setState(s) {
    this.state = s;
    this.emit('state', { state: s, retryAt: this.retryAt, code: this.endCode, reason: this.endReason });
  }

  // ------------------------------------------------------------ frames

  onWelcome(f) {
    const reconnected = this.welcomed;
    const me = { identifier: f.identifier, username: f.username };
    const someoneElse = this.me !== null && this.me.identifier !== me.identifier;
    const epochChanged = this.epoch !== undefined && f.epoch !== this.epoch;
    if (someoneElse || epochChanged) this.last.clear(); // what was held means nothing now
    const latest = f.latest && typeof f.latest === 'object' ? f.latest : {};
    const fresh = !reconnected || someoneElse;
    if (fresh) {
      // The first connection starts where the server stands: what came
      // before is history, for the caller to read if it wants.
      for (const [t, seq] of Object.entries(latest)) if (typeof seq === 'number') this.last.set(t, seq);
    }
    this.me = me;
    this.epoch = f.epoch;
    this.welcome = f;
    this.welcomed = true;
    this.attempt = 0;
    // Which targets moved while we were away: they are held from now on,
    // so that nothing live overtakes what is read back.
    const behind = [];
    if (!fresh) {
      for (const [t, seq] of Object.entries(latest)) {
        const held = this.last.get(t);
        if (typeof seq === 'number' && (held === undefined || seq > held)) {
          behind.push([t, held, seq]);
          this.holding.set(t, []);
        }
      }
    }
    this.setState('online');
    this.emit('welcome', { frame: f, reconnected, epochChanged: epochChanged || someoneElse });
    // Unanswered messages go again, with their ids, in the order first sent.
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.firstSent && now - p.firstSent > this.opts.resendWindow) {
        // Too old: the server may have forgotten its id, so a resend could
        // store it twice. The caller decides (a resumed copy may show up).
        this.pending.delete(id);
        p.reject(new ChatError(Codes.DISCONNECTED, 'not answered before the connection was lost, and too old to resend', p.frame));
      } else if (this.ws && this.ws.readyState === OPEN) {
        this.write(p);
      }
    }
    if (!fresh) this.resume(behind);
  }

  onFrame(f) {
    const answer = (f.type === 'ack' || f.type === 'error' || f.type === 'history' || f.type === 'members') && typeof f.id === 'string' && this.pending.get(f.id);
    if (answer) {
      this.pending.delete(f.id);
      if (f.type === 'error') answer.reject(new ChatError(f.code, f.message, answer.frame));
      else answer.resolve(f);
      return;
    }
    if (f.type === 'message') {
      this.live(f);
    } else if (f.type === 'event') {
      this.onEvent(f);
    } else if (f.type === 'error') {
      this.emit('error', new ChatError(f.code, f.message, null));
    }
  }

  onEvent(f) {
    const mine = this.me && f.identifier === this.me.identifier && f.emitter === 'participant';
    if (mine && f.event === 'left') {
      this.last.delete(f.target);
    } else if (f.emitter === 'channel' && f.event === 'destroy') {
      this.last.delete(f.identifier);
    }
    // A participant's event names its conversation as messages do: bob's
    // typing to alice has the target "@alice", which is "@bob" for her.
    const e = f.emitter === 'participant' && typeof f.target === 'string' ? { ...f, conversation: conversationOf(f, this.me) } : f;
    this.emit('event', e);
    if (typeof f.event === 'string' && f.event) this.emit(f.event, e);
  }

  // ------------------------------------------------------------ delivery

  /** A live message: held while its target catches up, else delivered if new. */
  live(f) {
    const t = conversationOf(f, this.me);
    const held = this.holding.get(t);
    if (held) held.push(f);
    else this.deliver(t, f, false);
  }

  /** Delivers f unless a message of t with that seq or a later one was delivered. */
  deliver(t, f, resumed) {
    const seq = f.seq;
    if (typeof seq === 'number') {
      const last = this.last.get(t);
      if (last !== undefined && seq <= last) return false;
      this.last.set(t, seq);
    }
    this.emit('message', { ...f, conversation: t, resumed });
    return true;
  }

  /** Ends a hold: what was held is delivered, in seq order, once. */
  release(t) {
    const held = this.holding.get(t);
    this.holding.delete(t);
    if (!held) return;
    held.sort((a, b) => (a.seq || 0) - (b.seq || 0));
    for (const f of held) this.deliver(t, f, false);
  }

  /**
   * The catch-up after a reconnect: each target in behind ([target, held,
   * latest]) is read back from history after the last seq delivered, one
   * target after the other (history counts against the rate limit), then
   * what arrived live meanwhile follows. A target of which nothing was
   * delivered yet (joined, or a conversation begun, while away, or joined
   * here with no message since) is read from its first stored message: the
   * client cannot tell which of them it has seen, so it has seen none.
   */
  async resume(behind) {
    const ws = this.ws;
    const counts = {};
    for (const [t, held, latest] of behind) {
      if (this.ws !== ws) return; // dropped: the next welcome starts over
      let after = held === undefined ? 0 : held;
      if (latest - after > this.opts.maxResume) {
        const from = latest - this.opts.maxResume;
        this.emit('gap', { target: t, from: after + 1, to: from });
        after = from;
        this.last.set(t, from);
      }
      counts[t] = 0;
      let tries = 0;
      for (;;) {
        let page;
        try {
          page = await this.request({ type: 'command', action: 'history', target: t, after, limit: 200 });
        } catch (err) {
          if (this.ws !== ws) return;
          if (err.code === Codes.RATE_LIMITED && tries++ < 10) {
            await new Promise((r) => setTimeout(r, 500 * tries));
            continue;
          }
          break; // left, destroyed, or the server could not: carry on live
        }
        const msgs = Array.isArray(page.messages) ? page.messages : [];
        if (typeof page.first === 'number' && page.first > after + 1) {
          this.emit('gap', { target: t, from: after + 1, to: page.first - 1 });
        }
        for (const m of msgs) {
          if (this.deliver(t, m, true)) counts[t]++;
          if (typeof m.seq === 'number') after = Math.max(after, m.seq);
        }
        if (!page.more || msgs.length === 0) break;
      }
      if (this.ws !== ws) return;
      this.release(t);
    }
    this.emit('resumed', { counts });
  }
}
