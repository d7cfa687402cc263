// History in the web client (issue 14), on two nodes on Redis: a
// conversation's latest messages when it opens, older ones 50 at a time when
// the reader scrolls to the top, and, after the node a reader is on is
// killed while others keep talking, the whole transcript once, in order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from '../lib/chatd.js';
import { twoNodes, recordStates } from '../lib/cluster.js';
import { signIn, openConv, say, message, assertClean, shotsOnFailure, createChannel, item } from '../lib/browser.js';

let node1;
let node2;
let proxy;
let browser;
let stop;

before(async () => {
  // Enough requests a second that the senders below are never refused.
  ({ node1, node2, proxy, browser, stop } = await twoNodes('history', { CHAT_RATE_LIMIT: '200' }));
});

after(() => stop?.());

/**
 * Starts sending "prefix 1" … "prefix n" to target from page, one after
 * the other, each once its predecessor is acked, with a second client of
 * chat-client.js in the page (the person's own session cookie). Resolves
 * at once; page.__sent counts the acks, page.__sending the promise.
 */
function startSending(page, target, prefix, n, pause = 0) {
  return page.evaluate(
    async ({ target, prefix, n, pause }) => {
      const { ChatClient } = await import('/chat-client.js');
      const c = new ChatClient();
      await new Promise((resolve) => {
        c.on('welcome', resolve);
        c.connect();
      });
      window.__sent = 0;
      window.__sending = (async () => {
        for (let i = 1; i <= n; i++) {
          await c.send(target, `${prefix} ${i}`);
          window.__sent = i;
          if (pause) await new Promise((r) => setTimeout(r, pause));
        }
        c.close();
      })();
    },
    { target, prefix, n, pause },
  );
}

/** Waits until page has sent at least n (see startSending). */
function sent(page, n) {
  return page.waitForFunction((n) => window.__sent >= n, n, { polling: 50 });
}

/** The texts of the open conversation's messages from author, top to bottom. */
function transcript(page, author) {
  return page.locator(`#messages .msg[data-user="${author}"] .text`).allTextContents();
}

function numbered(prefix, from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => `${prefix} ${from + i}`);
}

test('a conversation opens with its latest messages, and older ones load 50 at a time at the top', { timeout: 120000 }, () =>
  shotsOnFailure('scrollback', async () => {
    const alice = await signIn(browser, node1.url, 'alice');
    const bob = await signIn(browser, node2.url, 'bob');
    await createChannel(alice, 'books');
    await startSending(alice, '#books', 'page', 120);
    await alice.evaluate(() => window.__sending);
    await message(alice, 'alice', 'page 120').waitFor();

    // bob joins after all that was said, on the other node: the newest 50.
    await openConv(bob, '#books');
    await bob.click('#join-cta-btn');
    await message(bob, 'alice', 'page 120').waitFor();
    assert.deepEqual(await transcript(bob, 'alice'), numbered('page', 71, 120));
    assert.equal(await bob.locator('#history-edge button', { hasText: 'Load older messages' }).count(), 1);
    const box = bob.locator('#messages');
    assert.ok(await box.evaluate((b) => b.scrollHeight - b.scrollTop - b.clientHeight < 2), 'the newest message is in view');

    // Scrolling to the top loads the 50 before, and the reader keeps his place.
    const anchor = message(bob, 'alice', /^page 71$/);
    await box.evaluate((b) => (b.scrollTop = 0));
    await message(bob, 'alice', /^page 21$/).waitFor();
    assert.deepEqual(await transcript(bob, 'alice'), numbered('page', 21, 120));
    const [at, view] = [await anchor.boundingBox(), await box.boundingBox()];
    assert.ok(at.y >= view.y && at.y + at.height <= view.y + view.height, `page 71 is still in view, where the reader was (${at.y} in ${view.y}+${view.height})`);
    await bob.screenshot({ path: path.join(artifacts, 'history-scrollback.png') });
    // And once more: the last 20, and the beginning of the channel.
    await box.evaluate((b) => (b.scrollTop = 0));
    await message(bob, 'alice', /^page 1$/).waitFor();
    assert.deepEqual(await transcript(bob, 'alice'), numbered('page', 1, 120));
    await bob.locator('#history-edge', { hasText: 'This is the beginning of #books.' }).waitFor();
    // His join came after all of it, and its line says so.
    const lines = await bob.locator('#messages .msg .text, #messages .notice-line > span').allTextContents();
    assert.equal(lines.indexOf('You joined #books'), lines.indexOf('page 120') + 1);

    // A live message comes at the end, once, with all that history on screen.
    await say(alice, 'and one more');
    await message(bob, 'alice', 'and one more').waitFor();
    assert.deepEqual(await transcript(bob, 'alice'), [...numbered('page', 1, 120), 'and one more']);

    // A reload shows the channel's latest messages again, and the private
    // conversations come back to the sidebar.
    await say(bob, 'thanks for the reading list');
    await openConv(bob, '#books');
    await bob.click('#new-dm');
    await bob.fill('#dm-input', 'alice');
    await bob.press('#dm-input', 'Enter');
    await bob.locator('#title', { hasText: '@alice' }).waitFor();
    await say(bob, 'a private word');
    await message(bob, 'bob', 'a private word').waitFor();
    await alice.reload();
    await alice.locator('#conn[data-state="online"]').waitFor();
    await openConv(alice, '#books');
    await message(alice, 'bob', 'thanks for the reading list').waitFor();
    assert.deepEqual((await transcript(alice, 'alice')).slice(-3), ['page 119', 'page 120', 'and one more']);
    await openConv(alice, '@bob');
    await message(alice, 'bob', 'a private word').waitFor();

    await assertClean(alice);
    await assertClean(bob);
    await alice.context().close();
    await bob.context().close();
  }));

test('after her node is killed, alice sees everything said meanwhile, in order, once', { timeout: 120000 }, () =>
  shotsOnFailure('resume-kill', async () => {
    // alice reaches node 1 through the proxy, bob and carol are on node 2.
    const alice = await signIn(browser, proxy.url, 'alice');
    const bob = await signIn(browser, node2.url, 'bob');
    const carol = await signIn(browser, node2.url, 'carol');
    await createChannel(bob, 'newsroom');
    for (const page of [alice, carol]) {
      await openConv(page, '#newsroom');
      await page.click('#join-cta-btn');
      await page.locator('#composer').waitFor();
    }
    await say(alice, 'alice is here');
    await message(bob, 'alice', 'alice is here').waitFor();

    // bob keeps talking, a message every 40 ms; carol says a word now and then.
    await startSending(bob, '#newsroom', 'news', 80, 40);
    await message(alice, 'bob', /^news 10$/).waitFor();

    // Node 1 dies (SIGKILL: no close frame, no goodbye); the proxy still leads
    // there, so alice's tries fail until it leads to node 2.
    await recordStates(alice);
    await node1.kill('SIGKILL');
    await alice.locator('#conn[data-state="waiting"]').waitFor();
    const missedFrom = await bob.evaluate(() => window.__sent);
    await say(carol, 'carol, while alice is away');
    await sent(bob, missedFrom + 20);
    proxy.target = node2.port;

    // The automatic reconnect, then everything, while bob keeps going.
    await bob.evaluate(() => window.__sending);
    await message(alice, 'bob', /^news 80$/).waitFor();
    await alice.locator('#messages .notice-line', { hasText: 'Reconnected' }).waitFor();
    const states = await alice.evaluate(() => window.__states);
    assert.ok(states.includes('waiting') && states.at(-1) === 'online', `alice's page showed the reconnect: ${states}`);
    assert.deepEqual(await transcript(alice, 'bob'), numbered('news', 1, 80), 'bob: complete, in order, once');
    assert.deepEqual(await transcript(alice, 'carol'), ['carol, while alice is away']);
    const all = await alice.locator('#messages .msg .text').allTextContents();
    assert.equal(new Set(all).size, all.length, 'no message twice');
    // Where the reconnect put its line: after what was read back, before nothing older.
    const notice = await alice.locator('#messages .notice-line', { hasText: 'Reconnected' }).textContent();
    assert.match(notice, /The \d+ messages sent while you were offline are above/);
    await alice.screenshot({ path: path.join(artifacts, 'history-resumed-after-kill.png') });

    // She carries on, on node 2.
    await say(alice, 'back, and I read it all');
    await message(bob, 'alice', 'back, and I read it all').waitFor();
    assert.equal(await item(alice, '#newsroom').getAttribute('data-unread'), '0');

    // alice's console has the failed websocket and /auth/me tries of the
    // outage in it (as in cluster.test.js); her scripts ran without an error.
    assert.deepEqual(alice.errors, []);
    assert.deepEqual(await alice.evaluate(() => window.__csp), []);
    await assertClean(bob);
    await assertClean(carol);
    for (const p of [alice, bob, carol]) await p.context().close();
    proxy.target = node1.port;
    await node1.start();
  }));
