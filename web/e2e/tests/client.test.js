// The client's logic without a browser: the store, the name rules and the
// backoff (plain modules of web/static, loaded by node).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Store } from '../../static/store.js';
import { channelName, username, explain, blank } from '../../static/words.js';
import { backoff } from '../../static/conn.js';

const ALICE = '00000000-0000-4000-8000-00000000000a';
const BOB = '00000000-0000-4000-8000-00000000000b';

function welcome(over = {}) {
  return { type: 'welcome', identifier: ALICE, username: 'alice', channels: ['#main', '#random'], joined: ['#main'], owned: ['#random'], ...over };
}

function msg(target, from, name, text) {
  return { type: 'message', emitter: 'participant', target, identifier: from, username: name, message: text, ts: '2026-11-26T08:40:05.123Z' };
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
  s.frame(msg('#main', BOB, 'bob', 'seen'));
  s.frame(msg('@alice', BOB, 'bob', 'private'));
  s.frame(msg('@bob', ALICE, 'alice', 'my own, from another tab'));
  assert.equal(s.get('#main').unread, 0);
  assert.equal(s.get('@bob').unread, 1, 'a private message files under its sender; my own are never unread');
  assert.equal(s.get('@bob').items.length, 2);
  assert.equal(s.totalUnread(), 1);
  s.open('@bob');
  assert.equal(s.totalUnread(), 0);
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
  s.frame(msg('#main', BOB, 'bob', 'hello'));
  s.open('#random');
  s.welcome(welcome({ channels: ['#main', '#mine', '#later'], joined: ['#main', '#later'], owned: [] }), { reconnected: true });
  assert.deepEqual(s.channels().map((c) => c.key), ['#later', '#main', '#mine']);
  assert.equal(s.get('#mine').owned, true, 'created here, so owned');
  assert.equal(s.get('#later').joined, true);
  assert.equal(s.current, null, '#random went away while offline');
  const items = s.get('#main').items;
  assert.equal(items[0].text, 'hello');
  assert.match(items.at(-1).text, /^Reconnected/);
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
