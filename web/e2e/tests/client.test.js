// The client's logic without a browser: the store, the name rules, the
// backoff, the formatting, the time format and the notifications' rules
// (plain modules of web/static, loaded by node).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Store } from '../../static/store.js';
import { channelName, username, explain, blank } from '../../static/words.js';
import { backoff, ChatClient, ChatError } from '../../static/chat-client.js';
import { parse, mentionsMe, plainText } from '../../static/format.js';
import { timeFormat } from '../../static/view.js';
import { Notifier } from '../../static/notify.js';

const ALICE = '00000000-0000-4000-8000-00000000000a';
const BOB = '00000000-0000-4000-8000-00000000000b';

function welcome(over = {}) {
  return { type: 'welcome', identifier: ALICE, username: 'alice', channels: ['#main', '#random'], joined: ['#main'], owned: ['#random'], ...over };
}

let lastSeq = 1000;

/** A message frame; seq, if not given, is higher than any before. */
function msg(target, from, name, text, seq = ++lastSeq) {
  return { type: 'message', emitter: 'participant', target, identifier: from, username: name, message: text, ts: '2026-11-26T08:40:05.123Z', seq };
}

test('the welcome frame gives the lists', () => {
  const s = new Store();
  s.welcome(welcome());
  assert.deepEqual(
    s.channels().map((c) => [c.key, c.joined, c.owned]),
    [
      ['#main', true, false],
      ['#random', false, true],
    ],
  );
});

test('messages to conversations that are not open are unread', () => {
  const s = new Store();
  s.welcome(welcome());
  s.open('#main');
  const seen = msg('#main', BOB, 'bob', 'seen');
  s.frame(seen);
  s.readUpTo('#main', seen.seq); // the page read it on screen
  s.frame(msg('@bob', ALICE, 'alice', 'my own, from another tab'));
  s.frame(msg('@alice', BOB, 'bob', 'private'));
  assert.equal(s.get('#main').unread, 0);
  assert.equal(s.get('@bob').unread, 1, 'a private message files under its sender; my own are never unread');
  assert.equal(s.get('@bob').items.length, 2);
  assert.equal(s.totalUnread(), 1);
  s.open('@bob');
  s.readUpTo('@bob', s.get('@bob').latest);
  assert.equal(s.totalUnread(), 0);
  assert.equal(s.get('@bob').alert, false);
});

test('unread counts come from the read markers: the welcome\'s, and the read events', () => {
  const s = new Store();
  s.welcome(welcome({ latest: { '#main': 40, '@bob': 7, '@carol': 3 }, read: { '#main': 35, '@bob': 7 } }));
  assert.deepEqual(
    s.ordered().map((c) => [c.key, c.unread, c.alert]),
    [
      ['#main', 5, false],
      ['#random', 0, false],
      ['@bob', 0, false],
      ['@carol', 3, true],
    ],
    'latest less the marker; no marker: all of it; a private one is an alert',
  );
  s.frame(msg('#main', BOB, 'bob', 'more', 41));
  assert.equal(s.get('#main').unread, 6);
  // Read in another tab: the server's read event.
  s.frame({ type: 'event', emitter: 'participant', event: 'read', target: '#main', seq: 41, identifier: ALICE, username: 'alice' });
  assert.equal(s.get('#main').unread, 0);
  s.frame({ type: 'event', emitter: 'participant', event: 'read', target: '#main', seq: 30, identifier: ALICE, username: 'alice' });
  assert.equal(s.get('#main').unread, 0, 'a marker never moves back');
  assert.equal(s.totalUnread(), 3);
});

test('members, presence and typing', () => {
  const s = new Store();
  s.welcome(welcome());
  const CAROL = '00000000-0000-4000-8000-00000000000c';
  s.setMembers('#main', [
    { identifier: ALICE, username: 'alice', online: true },
    { identifier: BOB, username: 'bob', online: false },
  ]);
  const ev = (event, who, name, target = '#main') => s.frame({ type: 'event', emitter: 'participant', event, target, identifier: who, username: name });
  ev('online', BOB, 'bob');
  ev('join', CAROL, 'carol');
  ev('left', ALICE, 'alice');
  assert.deepEqual([...s.get('#main').members.values()].map((m) => [m.username, m.online]), [
    ['bob', true],
    ['carol', true],
  ]);
  ev('offline', CAROL, 'carol');
  assert.equal(s.get('#main').members.get(CAROL).online, false);
  // bob types in #main and, to alice, in their conversation (whose target is @alice for him).
  s.open('@bob');
  ev('typing', BOB, 'bob');
  ev('typing', BOB, 'bob', '@alice');
  assert.deepEqual(s.typingNow('#main'), ['bob']);
  assert.deepEqual(s.typingNow('@bob'), ['bob']);
  assert.equal(s.get('@alice'), null, 'no conversation with oneself appears');
  assert.deepEqual(s.typingNow('#main', Date.now() + 7000), [], 'shown for six seconds');
  s.frame(msg('@alice', BOB, 'bob', 'done typing'));
  assert.deepEqual(s.typingNow('@bob'), [], 'a message ends it');
});

test('events keep the lists live', () => {
  const s = new Store();
  s.welcome(welcome());
  s.frame({ type: 'event', emitter: 'channel', identifier: '#new', event: 'create' });
  s.frame({ type: 'event', emitter: 'participant', identifier: ALICE, event: 'join', target: '#new', username: 'alice' });
  assert.equal(s.get('#new').joined, true);
  s.frame({ type: 'event', emitter: 'participant', identifier: BOB, event: 'join', target: '#new', username: 'bob' });
  s.frame({ type: 'event', emitter: 'participant', identifier: ALICE, event: 'left', target: '#new', username: 'alice' });
  assert.equal(s.get('#new').joined, false);
  s.open('#new');
  s.frame({ type: 'event', emitter: 'channel', identifier: '#new', event: 'destroy' });
  assert.equal(s.get('#new'), null);
  assert.equal(s.current, null);
  assert.equal(s.lastGone, '#new was destroyed.');
});

test('a welcome after a reconnect re-syncs and keeps what still exists', () => {
  const s = new Store();
  s.welcome(welcome());
  s.created('#mine');
  s.frame(msg('#main', BOB, 'bob', 'hello', 1));
  s.open('#random');
  s.welcome(welcome({ channels: ['#main', '#mine', '#later'], joined: ['#main', '#later'], owned: [], latest: { '#main': 3, '@carol': 2 } }));
  assert.deepEqual(s.channels().map((c) => c.key), ['#later', '#main', '#mine']);
  assert.equal(s.get('#mine').owned, true, 'created here, so owned');
  assert.equal(s.get('#later').joined, true);
  assert.equal(s.current, null, '#random went away while offline');
  assert.deepEqual(s.directs().map((c) => c.key), ['@carol'], 'private conversations with messages are listed');
  // What was missed comes (chat-client.js reads it back), then the line.
  s.frame(msg('#main', BOB, 'bob', 'while you were away', 2));
  s.frame(msg('#main', BOB, 'bob', 'and this', 3));
  s.resumed({ '#main': 2 });
  const items = s.get('#main').items;
  assert.deepEqual(items.map((i) => i.text), ['hello', 'while you were away', 'and this', 'Reconnected. The 2 messages sent while you were offline are above.']);
});

test('messages are held once each, in seq order, whatever way they come', () => {
  const s = new Store();
  s.welcome(welcome());
  s.open('#main');
  s.readUpTo('#main', 4);
  s.frame(msg('#main', BOB, 'bob', 'five', 5));
  s.frame(msg('#main', BOB, 'bob', 'five again', 5));
  s.frame({ type: 'event', emitter: 'participant', identifier: BOB, event: 'join', target: '#main', username: 'carol' });
  s.frame(msg('#main', BOB, 'bob', 'six', 6));
  s.readUpTo('#main', 6);
  // The newest page of history, opened after the live messages came.
  const older = [1, 2, 3, 4, 5].map((n) => ({ ...msg('#main', BOB, 'bob', `m${n}`, n), ts: `2026-11-26T08:0${n}:00.000Z` }));
  s.historyPage('#main', { target: '#main', first: 1, more: false, messages: older.slice(2) });
  const seqs = () => s.get('#main').items.map((i) => (i.kind === 'message' ? i.seq : i.text));
  assert.deepEqual(seqs(), [3, 4, 5, 'carol joined #main', 6], 'read-back messages go before the join line that came after them');
  assert.equal(s.get('#main').more, true, 'first is 1 and 3 is the oldest held');
  s.historyPage('#main', { target: '#main', first: 1, more: false, messages: older.slice(0, 2) });
  s.frame({ type: 'event', emitter: 'participant', identifier: ALICE, event: 'join', target: '#main', username: 'alice' });
  s.historyPage('#main', { target: '#main', first: 1, more: false, messages: [msg('#main', BOB, 'bob', 'seven', 7)] });
  assert.deepEqual(seqs(), [1, 2, 3, 4, 5, 'carol joined #main', 6, 7, 'You joined #main'], 'a page newer than all held still goes before the lines that came after it');
  assert.equal(s.get('#main').more, false);
  assert.equal(s.get('#main').unread, 1, 'what lies above the marker is unread, however it came');
  s.readUpTo('#main', 7);
  assert.equal(s.get('#main').unread, 0);
  // A new epoch: the seqs held mean nothing any more.
  s.welcome(welcome({ epoch: 'new' }), { epochChanged: true });
  assert.deepEqual(s.get('#main').items, []);
  assert.equal(s.get('#main').loaded, false);
});

test('a welcome for someone else starts from nothing', () => {
  const s = new Store();
  s.welcome(welcome());
  s.frame(msg('@alice', BOB, 'bob', 'hi'));
  s.welcome(welcome({ identifier: BOB, username: 'bob', channels: [], joined: [], owned: [] }), { reconnected: true });
  assert.equal(s.convs.size, 0);
});

test('names typed by people', () => {
  assert.equal(channelName('Lobby'), '#lobby');
  assert.equal(channelName(' #a_b-9 '), '#a_b-9');
  assert.equal(channelName('#'), null);
  assert.equal(channelName('#' + 'x'.repeat(65)), null);
  assert.equal(channelName('#no spaces'), null);
  assert.equal(username('@Bob'), 'bob');
  assert.equal(username('x'.repeat(40)), null);
  assert.equal(username('b.b'), null);
  assert.equal(blank(' \n\t\u00a0\u2003'), true);
  assert.equal(blank(' a '), false);
});

test('errors in plain words', () => {
  assert.equal(explain({ code: 'not_found' }, { type: 'message', target: '@zed' }), 'There is nobody called @zed.');
  assert.equal(explain({ code: 'already_exists' }, { type: 'command', target: '#a' }), '#a already exists. You can join it instead.');
  assert.equal(explain({ code: 'new_code', message: 'from the server' }), 'from the server');
});

test('backoff grows, is jittered and is capped', () => {
  assert.equal(backoff(0, () => 0), 250);
  assert.equal(backoff(0, () => 1), 500);
  assert.equal(backoff(3, () => 0), 2000);
  assert.equal(backoff(50, () => 1), 30000);
  assert.equal(backoff(50, () => 0), 15000);
});

test('formatting: links, code, emphasis, mentions', () => {
  const t = (text) => ({ type: 'text', text });
  assert.deepEqual(parse('plain text'), [t('plain text')]);
  assert.deepEqual(parse('see https://example.com/a_b_c?x=1&y=2, then'), [
    t('see '),
    { type: 'link', href: 'https://example.com/a_b_c?x=1&y=2', text: 'https://example.com/a_b_c?x=1&y=2' },
    t(', then'),
  ]);
  assert.deepEqual(parse('(at http://example.com/wiki/A_(b)).'), [
    t('(at '),
    { type: 'link', href: 'http://example.com/wiki/A_(b)', text: 'http://example.com/wiki/A_(b)' },
    t(').'),
  ]);
  assert.deepEqual(parse('run `rm -rf *` now'), [t('run '), { type: 'code', text: 'rm -rf *' }, t(' now')]);
  assert.deepEqual(parse('```js\nlet a = 1;\n**not bold**\n```'), [{ type: 'pre', text: 'let a = 1;\n**not bold**' }]);
  assert.deepEqual(parse('**bold** and *it* and _it_'), [
    { type: 'strong', children: [t('bold')] },
    t(' and '),
    { type: 'em', children: [t('it')] },
    t(' and '),
    { type: 'em', children: [t('it')] },
  ]);
  assert.deepEqual(parse('**bold with *it* inside**'), [{ type: 'strong', children: [t('bold with '), { type: 'em', children: [t('it')] }, t(' inside')] }]);
  assert.deepEqual(parse('**https://example.com**'), [{ type: 'strong', children: [{ type: 'link', href: 'https://example.com/', text: 'https://example.com' }] }]);
  // What is not formatting stays as it was typed.
  for (const s of ['snake_case_name', '2*3*4 = 24', '* not a list', '** nor this **', 'a `', '``````', 'x**y', 'mail bob@example.com', '**']) {
    assert.deepEqual(parse(s), [t(s)], s);
  }
  // Only http(s) becomes a link; nothing else is a scheme to follow.
  for (const s of ['javascript:alert(1)', 'data:text/html,<b>x</b>', '[x](javascript:alert(1))', 'ftp://example.com', 'xhttps://example.com']) {
    assert.deepEqual(parse(s), [t(s)], s);
  }
  assert.deepEqual(parse('no link in `https://example.com`'), [t('no link in '), { type: 'code', text: 'https://example.com' }]);
  // Mentions: the reader's own are marked.
  const m = parse('hi @Alice and @bob-2, ok?', 'alice');
  assert.deepEqual(m, [
    t('hi '),
    { type: 'mention', name: 'alice', text: '@Alice', me: true },
    t(' and '),
    { type: 'mention', name: 'bob-2', text: '@bob-2', me: false },
    t(', ok?'),
  ]);
  assert.equal(mentionsMe(m), true);
  assert.equal(mentionsMe(parse('hi @alice2 and `@alice`', 'alice')), false);
  assert.equal(mentionsMe(parse('**@alice!**', 'alice')), true);
  assert.equal(plainText(parse('**bold** `code` https://example.com @bob')), 'bold code https://example.com @bob');
  // A long run of delimiters stays quick and stays text.
  const stars = '*'.repeat(4000);
  assert.equal(plainText(parse(stars)), stars);
});

test('times in the reader\'s locale, without a leading zero where it writes none', () => {
  const d = new Date('2026-11-26T06:07:05Z');
  assert.equal(timeFormat('en-US', 'UTC').format(d), '6:07 AM');
  assert.equal(timeFormat('en-GB', 'UTC').format(d), '06:07');
});

test('private conversations: confirmed by a delivered message, closed on demand', () => {
  const s = new Store();
  s.welcome(welcome());
  s.open('@nobody');
  assert.equal(s.get('@nobody').confirmed, false);
  s.closeDirect('@nobody');
  assert.equal(s.get('@nobody'), null);
  assert.equal(s.current, null);
  s.frame(msg('@alice', BOB, 'bob', 'hi'));
  assert.equal(s.get('@bob').confirmed, true);
  assert.equal(s.get('@bob').alert, true, 'a private message is for me in person');
  s.closeDirect('#main');
  assert.notEqual(s.get('#main'), null, 'a channel is not closed that way');
  s.closeDirect('@bob');
  s.frame(msg('@alice', BOB, 'bob', 'again'));
  assert.deepEqual(s.get('@bob').items.map((i) => i.text), ['again'], 'a new message opens it again');
});

test('mentions of me are alerts; the gone channel is told once with its membership', () => {
  const s = new Store();
  s.welcome(welcome());
  const changes = [];
  s.addEventListener('change', (e) => changes.push(e.detail));
  s.frame(msg('#main', BOB, 'bob', 'hey @alice look'));
  assert.equal(s.get('#main').alert, true);
  assert.equal(changes.at(-1).incoming.item.mentionsMe, true);
  s.frame(msg('#main', ALICE, 'alice', 'me, @alice'));
  assert.equal(changes.at(-1).incoming, null, 'my own message is not incoming');
  s.frame({ type: 'event', emitter: 'channel', identifier: '#main', event: 'destroy' });
  s.frame({ type: 'event', emitter: 'channel', identifier: '#random', event: 'destroy' });
  const gone = changes.filter((c) => c.gone).map((c) => c.gone);
  assert.deepEqual(gone, [
    { name: '#main', words: '#main was destroyed.', member: true, open: false },
    { name: '#random', words: '#random was destroyed.', member: false, open: false },
  ]);
});

test('notifications: asked only on a press, shown only while hidden, off on demand', async () => {
  const shown = [];
  let asked = 0;
  const saved = new Map();
  const win = {
    document: { visibilityState: 'visible' },
    localStorage: { getItem: (k) => saved.get(k) ?? null, setItem: (k, v) => saved.set(k, v) },
    focus() {},
  };
  win.Notification = class {
    static permission = 'default';
    static async requestPermission() {
      asked++;
      win.Notification.permission = 'granted';
      return 'granted';
    }
    constructor(title, opts) {
      shown.push([title, opts.body, opts.tag]);
    }
    close() {}
  };
  const n = new Notifier(() => {}, win);
  assert.equal(n.state, 'default');
  n.message('@bob', 'bob', 'hi');
  assert.equal(asked, 0, 'never asked without a press');
  assert.equal(await n.toggle(), 'on');
  assert.equal(asked, 1);
  n.message('@bob', 'bob', 'while visible');
  assert.equal(shown.length, 0);
  win.document.visibilityState = 'hidden';
  n.message('@bob', 'bob (private)', 'x'.repeat(500));
  assert.deepEqual(shown.map((s) => [s[0], [...s[1]].length, s[2]]), [['bob (private)', 180, '@bob']]);
  assert.equal(await n.toggle(), 'off');
  n.message('@bob', 'bob', 'muted');
  assert.equal(shown.length, 1);
  assert.equal(new Notifier(() => {}, win).state, 'off', 'remembered');
});

/**
 * A stand-in for a websocket that the test plays the server's side of: it
 * records what the client sends, and the test hands the client frames.
 */
class Wire {
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    Wire.last = this;
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
  /** A frame from the server. */
  frame(f) {
    this.onmessage({ data: JSON.stringify(f) });
  }
}

// The examples of docs/protocol.md are what the client reads and writes, so
// that the document and the client cannot drift apart (issue 18).
test('the frames of docs/protocol.md, read and written by chat-client.js', async () => {
  const doc = fs.readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
  // Frames in backticks and in indented blocks; "[…]" stands for a list.
  const frames = [...doc.matchAll(/`(\{"type":[^`]*\})`|^ {4}(\{"type":.*\})$/gm)].map((m) => JSON.parse((m[1] || m[2]).replaceAll('[…]', '[]')));
  const byType = (t) => frames.filter((f) => f.type === t);
  assert.ok(frames.length >= 20, `${frames.length} frames found`);
  const v2 = JSON.parse(`{${doc.match(/`("epoch":[^`]*)`/)[1]}}`);

  const c = new ChatClient('ws://chat.invalid/ws', { WebSocket: Wire });
  const got = [];
  for (const type of ['welcome', 'message', 'create', 'destroy', 'join', 'left', 'online', 'offline', 'typing', 'read', 'error']) {
    c.on(type, (d) => got.push([type, d]));
  }
  c.connect();
  const wire = Wire.last;
  assert.equal(wire.url, 'ws://chat.invalid/ws');
  const [welcome] = byType('welcome');
  wire.frame({ ...welcome, ...v2 });
  assert.equal(c.state, 'online');
  assert.equal(c.me.username, 'alice');
  assert.deepEqual(got.shift()[1].frame.latest, { '#main': 1042, '@bob': 17 });

  // Every request of the document goes out as written (with its id, or one added).
  const requests = frames.filter((f) => f.type === 'command' || (f.type === 'message' && !f.emitter));
  assert.ok(requests.length >= 7);
  const answers = requests.map((r) => c.request(r, { message: r.type === 'message' }).then((a) => a, (e) => e));
  assert.deepEqual(
    wire.sent.map(({ id, ...rest }) => rest),
    requests.map(({ id, ...rest }) => rest),
  );
  for (const [i, r] of requests.entries()) if (r.id) assert.equal(wire.sent[i].id, r.id);
  // And their answers settle them: the ack of "3" (a message's, with its
  // seq), the history of "9", the members of "4", the error of "7".
  const idOf = (id) => requests.findIndex((r) => r.id === id);
  const send = await (async () => {
    const p = c.send('#main', 'Hello guys!', { id: '3' });
    wire.frame(byType('ack').find((a) => a.seq));
    return p;
  })();
  assert.equal(send, 1043);
  wire.frame(byType('history')[0]);
  wire.frame(byType('members')[0]);
  const history = await answers[idOf('9')];
  assert.deepEqual([history.target, history.first, history.more], ['#main', 12, true]);
  const members = await answers[idOf('4')];
  assert.equal(members.members[0].username, 'alice');
  const failed = c.request({ type: 'command', action: 'destroy', target: '#nope', id: '7' });
  wire.frame(byType('error')[0]);
  await assert.rejects(failed, (e) => e instanceof ChatError && e.code === 'not_found' && e.message === 'channel #nope does not exist');

  // Every message and event of the document comes out typed.
  for (const f of [...byType('message').filter((m) => m.emitter), ...byType('event')]) wire.frame(f);
  const seen = got.map(([type, d]) => `${type} ${d.conversation || d.identifier}`);
  assert.deepEqual(seen, [
    'message #c',
    'message @alice', // alice's message to @u, read by someone else: the conversation with alice
    'create #c',
    'destroy #c',
    'join #c',
    'left #c',
    'online #c',
    'typing #c',
    'read #c',
  ]);
});
