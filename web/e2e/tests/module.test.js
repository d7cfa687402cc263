// chat-client.js through its API (issue 18), on two nodes on Redis: a test
// page on another origin (listed in CHAT_ALLOWED_ORIGINS) imports the module
// from a node and calls it directly: requests and their answers, errors as
// the protocol's codes, events, history, resume with no gap and no duplicate
// while another client keeps sending, and the resend of a message whose ack
// was lost. Then the example page of examples/web, and the token route from
// Node (with the ws package as its WebSocket).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import WebSocket from 'ws';
import { artifacts, freePort } from '../lib/chatd.js';
import { twoNodes } from '../lib/cluster.js';
import { Origin } from '../lib/origin.js';
import { newPage, assertClean, shotsOnFailure } from '../lib/browser.js';
import { ChatClient, ChatError, Codes } from '../../static/chat-client.js';

let node1;
let node2;
let proxy;
let browser;
let stop;
let origin;

before(async () => {
  origin = new Origin();
  await origin.listen();
  ({ node1, node2, proxy, browser, stop } = await twoNodes('module', { CHAT_RATE_LIMIT: '200', CHAT_ALLOWED_ORIGINS: origin.host }));
});

after(async () => {
  await stop?.();
  await origin?.close();
});

/**
 * A browser of its own for name, signed in on server (dev login through the
 * browser's own cookie jar), with the API test page open on the other origin.
 */
async function apiPage(name, server = node1.url) {
  const page = await newPage(browser, origin.url, name);
  const r = await page.context().request.post(`${server}/auth/dev/login`, { data: { username: name } });
  assert.equal(r.status(), 200, `dev login of ${name}`);
  await page.goto(`/api.html?server=${encodeURIComponent(server)}`);
  await page.locator('body[data-ready="true"]').waitFor();
  return page;
}

/** Waits until the messages client name logged to conversation number at least n. */
function logged(page, name, conversation, n) {
  return page.waitForFunction(
    ({ name, conversation, n }) => window.chat.clients[name].log.messages.filter((m) => m.conversation === conversation).length >= n,
    { name, conversation, n },
    { polling: 50 },
  );
}

test('requests settle on their answers; errors carry the protocol code; events are typed', { timeout: 60000 }, () =>
  shotsOnFailure('module-api', async () => {
    const alice = await apiPage('alice');
    const bob = await apiPage('bob', node2.url);

    const a = await alice.evaluate(async () => {
      const { open, settle, ChatClient, Codes } = window.chat;
      const c = await open('alice');
      const out = { me: c.me, welcome: Object.keys(c.welcome) };
      out.prefixes = [c.idPrefix, new ChatClient(window.chat.server).idPrefix];
      out.ids = [c.newId(), c.newId()];
      out.offline = await settle(new ChatClient(window.chat.server).create('#never'));
      out.create = await settle(c.create('#api'));
      out.createAgain = await settle(c.create('#api'));
      out.join = await settle(c.join('#api'));
      out.first = await settle(c.send('#api', 'one'));
      out.second = await settle(c.send('#api', 'two'));
      out.notFound = await settle(c.send('#nowhere', 'x'));
      out.invalidTarget = await settle(c.send('nowhere', 'x'));
      out.invalidMessage = await settle(c.send('#api', ' \n '));
      out.noUser = await settle(c.history('@nobody-at-all'));
      out.badRequest = await settle(c.history('#api', { before: 5, after: 1 }));
      out.leaveMissing = await settle(c.leave('#nowhere'));
      let token;
      try {
        new ChatClient(window.chat.server, { token: 'x' });
      } catch (e) {
        token = e.name;
      }
      out.tokenInBrowser = token;
      out.codes = Codes;
      return out;
    });
    assert.equal(a.me.username, 'alice');
    for (const k of ['epoch', 'latest', 'read', 'channels', 'joined', 'owned']) assert.ok(a.welcome.includes(k), `the welcome has ${k}`);
    assert.notEqual(a.prefixes[0], a.prefixes[1], 'each client its own id prefix');
    assert.match(a.ids[0], /^[0-9a-f]{12}\.\d+$/);
    assert.notEqual(a.ids[0], a.ids[1]);
    assert.deepEqual(a.create, { ok: true, value: undefined });
    assert.deepEqual(a.join, { ok: true, value: undefined });
    assert.deepEqual([a.first, a.second], [{ ok: true, value: 1 }, { ok: true, value: 2 }], 'a send resolves with its seq');
    const code = (r) => (r.ok ? 'ok' : `${r.name}/${r.code}/${r.isChatError}`);
    assert.deepEqual(
      {
        offline: code(a.offline),
        createAgain: code(a.createAgain),
        notFound: code(a.notFound),
        invalidTarget: code(a.invalidTarget),
        invalidMessage: code(a.invalidMessage),
        noUser: code(a.noUser),
        badRequest: code(a.badRequest),
        leaveMissing: code(a.leaveMissing),
      },
      {
        offline: 'ChatError/offline/true',
        createAgain: 'ChatError/already_exists/true',
        notFound: 'ChatError/not_found/true',
        invalidTarget: 'ChatError/invalid_target/true',
        invalidMessage: 'ChatError/invalid_message/true',
        noUser: 'ChatError/not_found/true',
        badRequest: 'ChatError/bad_request/true',
        leaveMissing: 'ChatError/not_found/true',
      },
    );
    assert.equal(a.tokenInBrowser, 'TypeError', 'a browser WebSocket cannot carry a token');
    assert.deepEqual(a.codes, { ...Codes }, 'the codes of the served module are the codes of this one');

    // bob, on the other node: what only someone else can get wrong.
    const b = await bob.evaluate(async () => {
      const { open, settle } = window.chat;
      const c = await open('bob');
      const out = {};
      out.forbidden = await settle(c.destroy('#api'));
      out.notMember = await settle(c.send('#api', 'let me in'));
      out.historyNotMember = await settle(c.history('#api'));
      out.join = await settle(c.join('#api'));
      out.history = await settle(c.history('#api'));
      out.dm = await settle(c.send('@alice', 'psst'));
      return out;
    });
    assert.equal(b.forbidden.code, 'forbidden');
    assert.equal(b.notMember.code, 'not_member');
    assert.equal(b.historyNotMember.code, 'not_member');
    assert.deepEqual(b.join, { ok: true, value: undefined });
    assert.deepEqual(
      b.history.value.messages.map((m) => [m.seq, m.message, m.conversation]),
      [
        [1, 'one', '#api'],
        [2, 'two', '#api'],
      ],
    );
    assert.equal(b.history.value.more, false);
    assert.equal(b.history.value.first, 1);

    // alice's events, by type, and her messages with the conversation named her way.
    await logged(alice, 'alice', '@bob', 1);
    const events = await alice.evaluate(async () => {
      const c = window.chat.clients.alice;
      const joins = [];
      const off = c.on('join', (e) => joins.push(e.username));
      const all = c.log.events.map((e) => `${e.event} ${e.username || e.identifier} ${e.target || ''}`.trim());
      const mine = c.log.messages.map((m) => [m.conversation, m.seq, m.message, m.resumed]);
      off();
      // A page of history, 3 at a time, both ways.
      for (let i = 3; i <= 12; i++) await c.send('#api', `m${i}`);
      const newest = await c.history('#api', { limit: 3 });
      const before = await c.history('#api', { before: newest.messages[0].seq, limit: 3 });
      const after = await c.history('#api', { after: 10 });
      const dm = await c.history('@bob');
      return {
        all,
        joins,
        mine,
        newest: [newest.messages.map((m) => m.seq), newest.more],
        before: [before.messages.map((m) => m.seq), before.more],
        after: [after.messages.map((m) => m.seq), after.more],
        dm: dm.messages.map((m) => [m.conversation, m.username, m.message]),
      };
    });
    assert.ok(events.all.includes('create #api #api') || events.all.includes('create #api'), `create event: ${events.all}`);
    assert.ok(events.all.includes('join alice #api') && events.all.includes('join bob #api'), `join events: ${events.all}`);
    assert.deepEqual(events.mine, [
      ['#api', 1, 'one', false],
      ['#api', 2, 'two', false],
      ['@bob', 1, 'psst', false],
    ]);
    assert.deepEqual(events.newest, [[10, 11, 12], true]);
    assert.deepEqual(events.before, [[7, 8, 9], true]);
    assert.deepEqual(events.after, [[11, 12], false]);
    assert.deepEqual(events.dm, [['@bob', 'bob', 'psst']]);

    // An unsubscribed listener hears nothing more; a closed client refuses.
    const late = await alice.evaluate(async () => {
      const { settle, clients } = window.chat;
      const c = clients.alice;
      let heard = 0;
      const off = c.on('message', () => heard++);
      off();
      await c.send('#api', 'nobody listens');
      c.close();
      return { heard, closed: await settle(c.send('#api', 'after close')), state: c.state };
    });
    assert.deepEqual(late, { heard: 0, closed: { ok: false, name: 'ChatError', code: 'closed', message: 'the client was closed', isChatError: true }, state: 'ended' });

    await assertClean(alice);
    await assertClean(bob);
    await alice.context().close();
    await bob.context().close();
  }));

test('resume: every message once, in order, while another client keeps sending', { timeout: 90000 }, () =>
  shotsOnFailure('module-resume', async () => {
    const alice = await apiPage('alice');
    const bob = await apiPage('bob', node2.url);
    // alice's websocket goes through the proxy, to node 1.
    await alice.evaluate(async (ws) => {
      const c = await window.chat.open('alice', ws, { backoffBase: 100 });
      await c.join('#resume').catch(async () => {
        await c.create('#resume');
        await c.join('#resume');
      });
    }, proxy.url);
    // bob sends 100 messages to #resume and every tenth one to alice privately.
    await bob.evaluate(async () => {
      const c = await window.chat.open('bob');
      await c.join('#resume');
      window.sent = 0;
      window.sending = (async () => {
        for (let i = 1; i <= 100; i++) {
          await c.send('#resume', `r${i}`);
          if (i % 10 === 0) await c.send('@alice', `p${i / 10}`);
          window.sent = i;
          await new Promise((r) => setTimeout(r, 15));
        }
      })();
    });
    await logged(alice, 'alice', '#resume', 10);

    // The network under alice fails; the proxy leads nowhere for a while.
    proxy.target = await freePort();
    proxy.dropAll();
    await alice.waitForFunction(() => window.chat.clients.alice.state === 'waiting');
    const at = await bob.evaluate(() => window.sent);
    await bob.waitForFunction((n) => window.sent >= n, at + 25, { polling: 50 });
    proxy.target = node1.port;

    await bob.evaluate(() => window.sending);
    await logged(alice, 'alice', '#resume', 100);
    await logged(alice, 'alice', '@bob', 10);
    const log = await alice.evaluate(() => {
      const l = window.chat.clients.alice.log;
      const of = (t) => l.messages.filter((m) => m.conversation === t);
      return {
        channel: of('#resume').map((m) => [m.seq, m.message]),
        resumed: of('#resume').filter((m) => m.resumed).length,
        direct: of('@bob').map((m) => m.message),
        welcomes: l.welcomes.map((w) => w.reconnected),
        counts: l.resumed,
        gaps: l.gaps,
        states: l.states,
      };
    });
    assert.deepEqual(
      log.channel,
      Array.from({ length: 100 }, (_, i) => [i + 1, `r${i + 1}`]),
      'seqs 1 to 100, each once, in order',
    );
    assert.deepEqual(log.direct, Array.from({ length: 10 }, (_, i) => `p${i + 1}`));
    assert.ok(log.resumed >= 25, `what was sent during the outage was read back (${log.resumed})`);
    assert.deepEqual(log.welcomes, [false, true]);
    assert.equal(log.counts.length, 1);
    assert.equal(log.counts[0]['#resume'], log.resumed);
    assert.deepEqual(log.gaps, []);
    assert.ok(log.states.includes('waiting'), `states: ${log.states}`);

    await assertClean(bob);
    assert.deepEqual(alice.errors, []);
    await alice.context().close();
    await bob.context().close();
  }));

test('a message whose ack was lost is sent again with its id, and stored once', { timeout: 60000 }, () =>
  shotsOnFailure('module-resend', async () => {
    const alice = await apiPage('alice');
    const bob = await apiPage('bob', node2.url);
    await alice.evaluate(async (ws) => {
      const c = await window.chat.open('alice', ws, { backoffBase: 100 });
      await c.create('#once');
      await c.join('#once');
    }, proxy.url);
    await bob.evaluate(async () => {
      const c = await window.chat.open('bob');
      await c.join('#once');
    });

    // What node 1 sends alice is lost from now on: her message gets through,
    // is stored and reaches bob, but its ack never reaches her.
    proxy.hold = true;
    await alice.evaluate(() => {
      const c = window.chat.clients.alice;
      window.id = null;
      window.result = window.chat.settle(c.send('#once', 'only once'));
    });
    await logged(bob, 'bob', '#once', 1);
    // Then her connection goes; she comes back, sends it again with the same id.
    proxy.dropAll();
    proxy.hold = false;
    const result = await alice.evaluate(() => window.result);
    const seen = await bob.evaluate(() => window.chat.clients.bob.log.messages.filter((m) => m.conversation === '#once').map((m) => [m.seq, m.message]));
    assert.deepEqual(seen, [[1, 'only once']]);
    assert.deepEqual(result, { ok: true, value: 1 }, 'the retry is answered with the first one\'s seq');

    // Anything delivered twice would come before bob's next message.
    await bob.evaluate(() => window.chat.clients.bob.send('#once', 'next'));
    await logged(alice, 'alice', '#once', 2);
    await logged(bob, 'bob', '#once', 2);
    for (const page of [alice, bob]) {
      const name = page === alice ? 'alice' : 'bob';
      const got = await page.evaluate((n) => window.chat.clients[n].log.messages.filter((m) => m.conversation === '#once').map((m) => m.message), name);
      assert.deepEqual(got, ['only once', 'next'], `${name} has it once`);
    }

    await assertClean(bob);
    assert.deepEqual(alice.errors, []);
    await alice.context().close();
    await bob.context().close();
  }));

test('the example page works from another origin', { timeout: 60000 }, () =>
  shotsOnFailure('module-example', async () => {
    const example = `/?server=${encodeURIComponent(node2.url)}`;
    // Not signed in on the chat server: the page says where to sign in.
    const visitor = await newPage(browser, origin.url, 'visitor');
    await visitor.goto(example);
    await visitor.locator('#signin').waitFor();
    assert.equal(await visitor.getAttribute('#signin-link', 'href'), `${node2.url}/`);
    await visitor.context().close();

    const dana = await newPage(browser, origin.url, 'dana');
    const r = await dana.context().request.post(`${node2.url}/auth/dev/login`, { data: { username: 'dana' } });
    assert.equal(r.status(), 200);
    await dana.goto(example);
    await dana.locator('#state', { hasText: 'online' }).waitFor();
    await dana.fill('#channel', '#example');
    await dana.press('#channel', 'Enter');
    const bob = await apiPage('bob');
    await bob.evaluate(async () => {
      const c = await window.chat.open('bob');
      await c.join('#example');
      await c.send('#example', 'hello <b>dana</b>, from bob');
    });
    await dana.locator('#log li', { hasText: 'hello <b>dana</b>, from bob' }).waitFor();
    assert.equal(await dana.locator('#log b').count(), 1, 'markup stays text');
    await dana.fill('#text', 'hi from another origin');
    await dana.press('#text', 'Enter');
    await logged(bob, 'bob', '#example', 2);
    assert.deepEqual(await dana.locator('#log li').allTextContents(), ['bobhello <b>dana</b>, from bob', 'danahi from another origin']);
    await dana.screenshot({ path: path.join(artifacts, 'example-page.png') });
    await assertClean(dana);
    await assertClean(bob);
    await dana.context().close();
    await bob.context().close();
  }));

test('from Node, with a token: the same API', { timeout: 30000 }, async () => {
  const login = await fetch(`${node1.url}/auth/dev/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'robot' }) });
  const { token } = await login.json();
  const c = new ChatClient(node1.url, { token, WebSocket });
  const welcome = new Promise((resolve) => c.on('welcome', resolve));
  c.connect();
  assert.equal((await welcome).frame.username, 'robot');
  await c.create('#bots');
  await c.join('#bots');
  const heard = new Promise((resolve) => c.on('message', resolve));
  const seq = await c.send('#bots', 'beep');
  assert.equal(seq, 1);
  assert.deepEqual(await heard.then((m) => [m.conversation, m.seq, m.message, m.username]), ['#bots', 1, 'beep', 'robot']);
  await assert.rejects(c.join('#no-such-channel'), (e) => e instanceof ChatError && e.code === Codes.NOT_FOUND);
  c.close();

  // A token that is no good: the upgrade is refused, and signedIn says why.
  const bad = new ChatClient(node1.url, { token: 'not-a-token', WebSocket, signedIn: async () => false });
  const ended = new Promise((resolve) => bad.on('state', (s) => s.state === 'ended' && resolve(bad.endCode)));
  bad.connect();
  assert.equal(await ended, 4401);
});
