// The client's model of the chat: who we are, every channel, the private
// conversations, their messages, members, who is typing, and unread counts
// (the newest seq less the server's read marker, spec 7). It knows nothing of the
// DOM or the socket: the app feeds it server frames and the user's choices,
// and it tells its listeners what changed. Pure logic, so node can test it.

// A conversation is a channel ("#lobby") or a private conversation with one
// user ("@bob"); its key is that name, lower case, as the server sends it.

import { parse, mentionsMe } from './format.js';
import { conversationOf } from './chat-client.js';

/**
 * How many items a conversation keeps while it is not open; older ones are
 * dropped (and can be read back from history). The open one keeps what
 * scrollback loads.
 */
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
  welcome(frame, { epochChanged = false } = {}) {
    if (this.me && this.me.identifier !== frame.identifier) {
      // Someone else signed in on this browser: nothing of the old user stays.
      this.convs.clear();
      this.current = null;
      this.createdHere.clear();
    } else if (epochChanged) {
      // The server's history was lost: the seqs held mean nothing now.
      for (const c of this.convs.values()) forget(c);
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
    // The private conversations with messages (the 100 most recent) are
    // listed too, so that a reload keeps them. Unread is what lies above
    // the read marker (none yet: all of it); a private one unread is for
    // the reader in person.
    const latest = frame.latest || {};
    const read = frame.read || {};
    for (const [key, seq] of Object.entries(latest)) {
      if (key.startsWith('#') && !all.has(key)) continue;
      const c = this.ensure(key);
      if (c.kind === 'direct') c.confirmed = true;
      c.latest = seq;
      c.read = read[key] || 0;
      recount(c);
      if (c.kind === 'direct' && c.unread > 0) c.alert = true;
    }
    // What was said about members and typing meanwhile is not replayed.
    for (const c of this.convs.values()) {
      c.members = null;
      c.typing.clear();
    }
    this.changed({ sidebar: true, pane: true, members: this.current });
  }

  /**
   * The catch-up after a reconnect is done (counts: messages read back per
   * conversation): each conversation on screen says so where it happened.
   */
  resumed(counts = {}) {
    const now = new Date();
    for (const c of this.convs.values()) {
      if (c.items.length === 0) continue;
      const n = counts[c.key] || 0;
      const words = n === 0 ? 'Reconnected.' : `Reconnected. ${n === 1 ? 'The message' : `The ${n} messages`} sent while you were offline ${n === 1 ? 'is' : 'are'} above.`;
      this.push(c, notice(words, now));
    }
    this.changed({ appended: this.current });
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
    if (typeof f.target !== 'string') return;
    const key = f.conversation || conversationOf(f, this.me);
    const isMe = this.me !== null && f.identifier === this.me.identifier;
    if (f.event === 'read') {
      this.readUpTo(key, f.seq);
      return;
    }
    if (f.event === 'typing') {
      const c = this.convs.get(key);
      if (!c || isMe) return;
      c.typing.set(f.username, Date.now() + TYPING_SHOWN);
      this.changed({ typing: key });
      return;
    }
    if (f.event === 'online' || f.event === 'offline') {
      const c = this.convs.get(key);
      const m = c && c.members && c.members.get(f.identifier);
      if (!m) return;
      m.online = f.event === 'online';
      this.changed({ members: key });
      return;
    }
    const c = this.ensure(key);
    const who = isMe ? 'You' : f.username;
    if (f.event === 'join') {
      if (isMe) c.joined = true;
      if (c.members) c.members.set(f.identifier, { identifier: f.identifier, username: f.username, online: true });
      this.push(c, notice(`${who} joined ${c.key}`, new Date()));
    } else if (f.event === 'left') {
      if (isMe) {
        c.joined = false;
        c.read = c.latest; // leaving drops the marker: nothing there is unread
        recount(c);
      }
      if (c.members) c.members.delete(f.identifier);
      this.push(c, notice(`${who} left ${c.key}`, new Date()));
    } else {
      return;
    }
    this.changed({ sidebar: true, pane: this.current === c.key, appended: c.key, members: c.key });
  }

  /** The members of a channel (chat-client.js's allMembers()), as the server listed them. */
  setMembers(key, list) {
    const c = this.convs.get(key);
    if (!c) return;
    c.members = new Map(list.map((m) => [m.identifier, { identifier: m.identifier, username: m.username, online: !!m.online }]));
    this.changed({ members: key });
  }

  /** The names typing in key now (their last typing event is under TYPING_SHOWN old). */
  typingNow(key, now = Date.now()) {
    const c = this.convs.get(key);
    if (!c) return [];
    for (const [name, until] of c.typing) if (until <= now) c.typing.delete(name);
    return [...c.typing.keys()].sort();
  }

  /**
   * The read marker of key moved (the server's read event, or this page
   * reading on screen, which tells the server): what lies at or below seq
   * is read.
   */
  readUpTo(key, seq) {
    const c = this.convs.get(key);
    if (!c || typeof seq !== 'number' || seq <= c.read) return;
    c.read = seq;
    recount(c);
    this.changed({ sidebar: true });
  }

  /**
   * A message, live or read back after a reconnect (chat-client.js delivers
   * each once, in order); one already held (by seq) is dropped.
   */
  message(f) {
    if (typeof f.target !== 'string') return;
    const key = f.conversation || conversationOf(f, this.me);
    const c = this.ensure(key);
    c.confirmed = true; // the server delivered it, so the other user exists
    if (typeof f.seq === 'number' && c.seqs.has(f.seq)) return;
    const item = this.item(f);
    const atEnd = this.place(c, item, !!f.resumed);
    if (item.seq !== null && item.seq > c.latest) c.latest = item.seq;
    // One's own messages are read; the one who wrote stops typing.
    if (item.mine && item.seq !== null && item.seq > c.read) c.read = item.seq;
    const wasTyping = c.typing.delete(item.username);
    recount(c);
    if (c.unread > 0 && !item.mine && (c.kind === 'direct' || item.mentionsMe)) {
      // A private message or a mention is for the reader in person.
      c.alert = true;
    }
    const open = key === this.current;
    this.changed({ sidebar: true, appended: atEnd ? key : null, pane: open && !atEnd, keepScroll: true, typing: wasTyping ? key : null, incoming: item.mine ? null : { key, item } });
  }

  /**
   * A page of a conversation's history (chat-client.js's history()):
   * merged with what is held, by seq. What lies above the read marker is
   * unread, as the welcome counts it.
   * Whether older messages remain follows from the page's `first`.
   */
  historyPage(key, page) {
    const c = this.ensure(key);
    c.confirmed = true;
    c.loading = false;
    c.loaded = true;
    for (const f of page.messages) {
      if (typeof f.seq === 'number' && f.seq > c.latest) c.latest = f.seq;
      if (typeof f.seq === 'number' && c.seqs.has(f.seq)) continue;
      this.place(c, this.item(f), true);
    }
    recount(c);
    const oldest = oldestSeq(c);
    c.more = oldest !== null && typeof page.first === 'number' && oldest > page.first;
    this.changed({ pane: key === this.current, keepScroll: true, sidebar: true });
  }

  /** A history request of key started (true) or failed (false). */
  loading(key, on) {
    const c = this.convs.get(key);
    if (!c) return;
    c.loading = on;
    this.changed({ edge: key });
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
    const prev = this.current !== null ? this.convs.get(this.current) : null;
    const c = key === null ? null : this.ensure(key);
    this.current = key;
    if (prev && prev !== c) trim(prev);
    if (c) c.alert = false;
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
        latest: 0, // the newest seq known
        read: 0, // the read marker (spec 7)
        unread: 0, // latest − read
        alert: false, // an unread private message or mention
        members: null, // identifier -> {identifier, username, online}, once listed
        typing: new Map(), // username -> until when it shows (ms)
        confirmed: false, // (private) a message in it was delivered, or its history read
        items: [],
        seqs: new Set(), // the seqs of the messages in items
        loaded: false, // a page of its history was read
        loading: false, // a history request is out
        more: null, // older messages remain in history (null: not known yet)
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
    if (c.key !== this.current) trim(c);
  }

  /** A message item of a message frame. */
  item(f) {
    const mine = this.me !== null && f.identifier === this.me.identifier;
    const ts = new Date(f.ts);
    const text = typeof f.message === 'string' ? f.message : '';
    const nodes = parse(text, this.me ? this.me.username : '');
    return {
      kind: 'message',
      seq: typeof f.seq === 'number' ? f.seq : null,
      identifier: f.identifier,
      username: f.username,
      text,
      nodes,
      mentionsMe: !mine && mentionsMe(nodes),
      ts: isNaN(ts) ? new Date() : ts,
      tsText: f.ts,
      mine,
    };
  }

  /**
   * Puts a message item in its place by seq: before the first newer
   * message, else at the end. A message from the past (read back: old)
   * also goes before the app's own lines (joins, reconnects) that came
   * after it; a live one never does, whatever the clocks say. Reports
   * whether the item went at the very end.
   */
  place(c, item, old) {
    if (item.seq !== null) c.seqs.add(item.seq);
    const items = c.items;
    let j = item.seq === null ? -1 : items.findIndex((x) => x.kind === 'message' && x.seq !== null && x.seq > item.seq);
    if (j < 0) j = items.length;
    if (old) while (j > 0 && items[j - 1].kind !== 'message' && items[j - 1].ts > item.ts) j--;
    if (j === items.length) {
      this.push(c, item);
      return true;
    }
    items.splice(j, 0, item);
    return false;
  }

  changed(detail) {
    this.dispatchEvent(new CustomEvent('change', { detail }));
  }
}

/** How long "… is typing" shows after a typing event (spec 6 sends one every 3 s at most). */
export const TYPING_SHOWN = 6000;

/** Unread is what lies above the read marker; nothing unread, nothing to alert. */
function recount(c) {
  c.unread = Math.max(0, c.latest - c.read);
  if (c.unread === 0) c.alert = false;
}

/** The lowest seq c holds, or null. */
export function oldestSeq(c) {
  for (const it of c.items) if (it.kind === 'message' && it.seq !== null) return it.seq;
  return null;
}

/** Keeps the newest MAX_ITEMS items of c; what goes can be read back from history. */
function trim(c) {
  if (c.items.length <= MAX_ITEMS) return;
  for (const it of c.items.splice(0, c.items.length - MAX_ITEMS)) if (it.seq !== null && it.seq !== undefined) c.seqs.delete(it.seq);
  c.more = true;
}

/** Drops what c holds of the server's history (a new epoch). */
function forget(c) {
  c.items = [];
  c.seqs.clear();
  c.loaded = false;
  c.more = null;
}

function notice(text, ts) {
  return { kind: 'notice', text, ts };
}

function byKey(a, b) {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** @typedef {{key: string, kind: 'channel'|'direct', joined: boolean, owned: boolean, unread: number, alert: boolean, confirmed: boolean, items: object[], seqs: Set<number>, loaded: boolean, loading: boolean, more: boolean|null, latest: number, read: number, members: Map|null, typing: Map}} Conversation */
