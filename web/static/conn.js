// The websocket to /ws: requests with ids answered by ack or error, and a
// connection that comes back by itself after a drop or a 1001 (a node shutting
// down), with jittered exponential backoff. The server keeps memberships, so
// carrying on is just opening a new socket and reading the new welcome.
//
// States (the 'state' event's detail, also this.state):
//   idle        not started yet
//   connecting  a socket is opening (or open, waiting for the welcome)
//   online      the welcome arrived
//   waiting     dropped; the next try is at this.retryAt
//   ended       closed for good: logged out (1000), refused (1008), signed
//               out elsewhere; this.endCode and this.endReason say why

/** Backoff before try number attempt (0-based): equal jitter, 0.5 s doubling to 30 s. */
export function backoff(attempt, rand = Math.random, base = 500, cap = 30000) {
  const ceil = Math.min(cap, base * 2 ** Math.min(attempt, 16));
  return ceil / 2 + rand() * (ceil / 2);
}

export class Connection extends EventTarget {
  /**
   * @param {string} url the websocket URL
   * @param {() => Promise<boolean|null>} signedIn asks whether the session is
   *   still valid (true, false, or null when that can't be told): a refused
   *   upgrade (401) looks like any other failure to a browser.
   */
  constructor(url, signedIn) {
    super();
    this.url = url;
    this.signedIn = signedIn;
    this.state = 'idle'; // until start
    this.ws = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.timer = 0;
    this.nextId = 0;
    // Request ids are unique for the user, not just for this page: the
    // server takes a message with an id it has seen (from this user, to
    // this target, in the last five minutes) for a retry, and does not
    // deliver it again. getRandomValues works on plain http too.
    this.idPrefix = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
    this.pending = new Map(); // id -> {resolve, reject}
    this.welcomed = false; // a welcome arrived on some socket of this Connection
    this.endCode = 0;
    this.endReason = '';
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Closes for good (logout): no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.failPending('disconnected');
    this.end(1000, 'signed out');
  }

  /** Tries at once instead of waiting for the backoff (the Retry button, coming online). */
  retryNow() {
    if (this.state !== 'waiting' && !(this.state === 'ended' && !this.stopped && this.endCode !== 1000)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  /**
   * Sends a request with a fresh id; resolves on its ack, rejects with
   * {code, message} on its error or when the socket goes before the answer.
   */
  request(obj) {
    if (this.state !== 'online') return Promise.reject({ code: 'offline', message: 'not connected' });
    const id = `${this.idPrefix}.${++this.nextId}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...obj, id }));
    });
  }

  connect() {
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.dropped(null, 1006, String(e));
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.type === 'welcome') {
        const reconnected = this.welcomed;
        welcomed = this.welcomed = true;
        this.attempt = 0;
        this.setState('online');
        this.emit('welcome', { frame: f, reconnected });
        return;
      }
      if ((f.type === 'ack' || f.type === 'error') && typeof f.id === 'string' && this.pending.has(f.id)) {
        const p = this.pending.get(f.id);
        this.pending.delete(f.id);
        if (f.type === 'ack') p.resolve(f);
        else p.reject({ code: f.code, message: f.message });
        return;
      }
      this.emit('frame', f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.dropped(ws, ev.code, ev.reason, welcomed);
    };
  }

  async dropped(ws, code, reason, welcomed) {
    this.failPending('disconnected');
    if (this.stopped) return;
    if (code === 1000) {
      // Logged out (here or in another tab: the session is gone).
      this.end(1000, reason);
      return;
    }
    if (code === 1008) {
      this.end(1008, reason);
      return;
    }
    if (!welcomed) {
      // The upgrade may have been refused because the session is no longer valid.
      this.setState('connecting');
      const ok = await this.signedIn().catch(() => null);
      if (this.stopped) return;
      if (ok === false) {
        this.end(4401, 'not signed in');
        return;
      }
    }
    this.lastDrop = { code, reason };
    const delay = backoff(this.attempt++);
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    this.timer = setTimeout(() => this.connect(), delay);
  }

  end(code, reason) {
    this.endCode = code;
    this.endReason = reason || '';
    this.setState('ended');
  }

  failPending(code) {
    for (const p of this.pending.values()) p.reject({ code, message: 'connection closed' });
    this.pending.clear();
  }

  setState(s) {
    this.state = s;
    this.emit('state', s);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
