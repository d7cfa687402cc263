// The client's model of the chat: who we are, every channel, the private
// conversations, their messages and unread counts. It knows nothing of the
// DOM or the socket: the app feeds it server frames and the user's choices,
// and it tells its listeners what changed. Pure logic, so node can test it.

// A conversation is a channel ("#lobby") or a private conversation with one
// user ("@bob"); its key is that name, lower case, as the server sends it.

import { parse, mentionsMe } from './format.js';

/** How many items a conversation keeps; older ones are dropped. */
export const MAX_ITEMS = 1000;

export class Store extends EventTarget {
  constructor() {
    super();
    /** @type {{identifier: string, username: string} | null} */
    this.me = null;
    /** @type {Map<string, Conversation>} */
    this.convs = new Map();
    /** @type {string | null} the open conversation's key */
    this.current = null;
    /** channels this user created while the page was open (welcome's owned covers the rest) */
    this.createdHere = new Set();
    /** words for the pane when the open channel went away ("#x was destroyed.") */
    this.lastGone = '';
    this.seq = 0;
  }

  /** Channels, sorted by name. */
  channels() {
    return [...this.convs.values()].filter((c) => c.kind === 'channel').sort(byKey);
  }

  /** Private conversations, sorted by name. */
  directs() {
    return [...this.convs.values()].filter((c) => c.kind === 'direct').sort(byKey);
  }

  /** Every conversation in the sidebar's order: channels, then private ones. */
  ordered() {
    return [...this.channels(), ...this.directs()];
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }

  /**
   * The welcome frame: at login, and again after every reconnect, when it
   * re-syncs the channel lists (channels may have come and gone meanwhile).
   */
  welcome(frame, { reconnected = false } = {}) {
    if (this.me && this.me.identifier !== frame.identifier) {
      // Someone else signed in on this browser: nothing of the old user stays.
      this.convs.clear();
      this.current = null;
      this.createdHere.clear();
      reconnected = false;
    }
    this.me = { identifier: frame.identifier, username: frame.username };
    const all = new Set(frame.channels || []);
    const joined = new Set(frame.joined || []);
    const owned = new Set(frame.owned || []);
    for (const c of [...this.convs.values()]) {
      if (c.kind === 'channel' && !all.has(c.key)) this.removeChannel(c.key, 'was destroyed while you were offline');
    }
    for (const name of all) {
      const c = this.ensure(name);
      c.joined = joined.has(name);
      c.owned = owned.has(name) || this.createdHere.has(name);
    }
    if (reconnected) {
      const now = new Date();
      for (const c of this.convs.values()) {
        if (c.items.length > 0) this.push(c, notice('Reconnected. Messages sent while you were offline are not shown.', now));
      }
    }
    this.changed({ sidebar: true, pane: true });
  }

  /** Any frame from the server other than welcome, ack and answered errors. */
  frame(f) {
    if (f.type === 'event' && f.emitter === 'channel') return this.channelEvent(f);
    if (f.type === 'event' && f.emitter === 'participant') return this.participantEvent(f);
    if (f.type === 'message') return this.message(f);
    return undefined;
  }

  channelEvent(f) {
    const name = f.identifier;
    if (f.event === 'create') {
      this.ensure(name);
      this.changed({ sidebar: true, pane: this.current === name });
    } else if (f.event === 'destroy') {
      this.removeChannel(name, 'was destroyed');
    }
  }

  participantEvent(f) {
    const c = this.ensure(f.target);
    const isMe = this.me !== null && f.identifier === this.me.identifier;
    const who = isMe ? 'You' : f.username;
    if (f.event === 'join') {
      if (isMe) c.joined = true;
      this.push(c, notice(`${who} joined ${c.key}`, new Date()));
    } else if (f.event === 'left') {
      if (isMe) c.joined = false;
      this.push(c, notice(`${who} left ${c.key}`, new Date()));
    } else {
      return;
    }
    this.changed({ sidebar: true, pane: this.current === c.key, appended: c.key });
  }

  message(f) {
    const mine = this.me !== null && f.identifier === this.me.identifier;
    let key = f.target;
    if (typeof key !== 'string') return;
    if (key.startsWith('@') && !mine) key = '@' + f.username;
    const c = this.ensure(key);
    c.confirmed = true; // the server delivered it, so the other user exists
    const ts = new Date(f.ts);
    const text = typeof f.message === 'string' ? f.message : '';
    const nodes = parse(text, this.me ? this.me.username : '');
    const item = {
      kind: 'message',
      seq: ++this.seq,
      identifier: f.identifier,
      username: f.username,
      text,
      nodes,
      mentionsMe: !mine && mentionsMe(nodes),
      ts: isNaN(ts) ? new Date() : ts,
      tsText: f.ts,
      mine,
    };
    this.push(c, item);
    if (key !== this.current && !mine) {
      c.unread++;
      // A private message or a mention is for the reader in person.
      if (c.kind === 'direct' || item.mentionsMe) c.alert = true;
    }
    this.changed({ sidebar: true, appended: key, incoming: mine ? null : { key, item } });
  }

  /**
   * The user's own join or leave of a channel was acknowledged; its event
   * may come before or after the ack.
   */
  membership(key, joined) {
    const c = this.convs.get(key);
    if (!c || c.kind !== 'channel' || c.joined === joined) return;
    c.joined = joined;
    this.changed({ sidebar: true, pane: this.current === key });
  }

  /** The user created a channel (its create was acknowledged). */
  created(name) {
    this.createdHere.add(name);
    const c = this.ensure(name);
    c.owned = true;
    this.changed({ sidebar: true, pane: this.current === name });
  }

  /**
   * Opens a conversation (creating an empty private one on demand: it is
   * not confirmed until a message in it is delivered, which tells that the
   * other user exists).
   */
  open(key) {
    const c = key === null ? null : this.ensure(key);
    this.current = key;
    if (c) {
      c.unread = 0;
      c.alert = false;
    }
    this.changed({ sidebar: true, pane: true, opened: true });
  }

  /**
   * Closes a private conversation: it leaves the sidebar with what it
   * held. A new message in it opens it again.
   */
  closeDirect(key) {
    const c = this.convs.get(key);
    if (!c || c.kind !== 'direct') return;
    this.convs.delete(key);
    const pane = this.current === key;
    if (pane) this.current = null;
    this.changed({ sidebar: true, pane });
  }

  /** Adds a line of the app's own to a conversation (not from the server). */
  note(key, text) {
    const c = this.convs.get(key);
    if (!c) return;
    this.push(c, notice(text, new Date()));
    this.changed({ appended: key });
  }

  get(key) {
    return this.convs.get(key) || null;
  }

  // --- internals

  ensure(key) {
    let c = this.convs.get(key);
    if (!c) {
      c = {
        key,
        kind: key.startsWith('@') ? 'direct' : 'channel',
        joined: false,
        owned: false,
        unread: 0,
        alert: false, // an unread private message or mention
        confirmed: false, // (private) a message in it was delivered
        items: [],
      };
      this.convs.set(key, c);
    }
    return c;
  }

  /**
   * A channel is gone. The change says so once: gone names it, with the
   * words, and whether the user was a member and had it open.
   */
  removeChannel(name, why) {
    const c = this.convs.get(name);
    if (!c) return;
    this.convs.delete(name);
    this.createdHere.delete(name);
    const open = this.current === name;
    if (open) {
      this.current = null;
      this.lastGone = `${name} ${why}.`;
    }
    this.changed({ sidebar: true, pane: open, gone: { name, words: `${name} ${why}.`, member: c.joined, open } });
  }

  push(c, item) {
    c.items.push(item);
    if (c.items.length > MAX_ITEMS) c.items.splice(0, c.items.length - MAX_ITEMS);
  }

  changed(detail) {
    this.dispatchEvent(new CustomEvent('change', { detail }));
  }
}

function notice(text, ts) {
  return { kind: 'notice', text, ts };
}

function byKey(a, b) {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** @typedef {{key: string, kind: 'channel'|'direct', joined: boolean, owned: boolean, unread: number, alert: boolean, confirmed: boolean, items: object[]}} Conversation */
