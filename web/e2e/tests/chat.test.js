// The web client against one chatd node in its embedded default (memory) mode.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from '../lib/chatd.js';
import { singleNode } from '../lib/single.js';
import { signIn, openConv, say, message, shotsOnFailure, createChannel } from '../lib/browser.js';
import { chatScenario } from '../lib/scenario.js';
import { featureScenario } from '../lib/features.js';

let node;
let browser;
let stop;

before(async () => {
  ({ node, browser, stop } = await singleNode('single'));
});

after(() => stop?.());

test('alice and bob chat on one node', { timeout: 180000 }, () =>
  shotsOnFailure('single', async () => {
    await chatScenario(browser, node.url, node.url, 'single');
  }));

test('what people expect of a chat client, on one node', { timeout: 180000 }, () =>
  shotsOnFailure('features-single', async () => {
    await featureScenario(browser, node.url, node.url, 'single');
  }));

test('the main screen at phone width', { timeout: 60000 }, () =>
  shotsOnFailure('phone', async () => {
    const phone = { width: 390, height: 760 };
    const visitor = await (await browser.newContext({ baseURL: node.url, viewport: phone })).newPage();
    await visitor.goto('/');
    await visitor.locator('#dev-login').waitFor();
    // A button per configured provider, next to the dev login.
    const github = visitor.locator('#providers a[data-provider="github"]');
    assert.equal(await github.textContent(), 'Continue with GitHub');
    assert.equal(await github.getAttribute('href'), '/auth/github/login');
    await noSideways(visitor);
    await visitor.screenshot({ path: path.join(artifacts, 'phone-login.png') });
    await visitor.context().close();

    const carol = await signIn(browser, node.url, 'carol', { viewport: phone });
    await createChannel(carol, 'phones');
    // On a phone the list and the conversation take turns on the screen.
    await carol.locator('#app[data-view="pane"]').waitFor();
    await carol.locator('.sidebar').waitFor({ state: 'hidden' });
    await carol.fill('#input', 'Small screens work too.');
    await carol.press('#input', 'Enter');
    await carol.locator('#messages .text', { hasText: 'Small screens work too.' }).waitFor();
    await noSideways(carol);
    await carol.screenshot({ path: path.join(artifacts, 'phone-pane.png') });
    await carol.click('#back');
    await carol.locator('.sidebar').waitFor();
    await noSideways(carol);
    await carol.screenshot({ path: path.join(artifacts, 'phone-list.png') });
    await carol.context().close();
  }));

/** Checks that the page fits its width: nothing to scroll sideways. */
async function noSideways(page) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= width, `the page is ${scroll}px wide in a ${width}px window`);
}

// In memory mode a restart forgets everything, sessions included: the page
// notices, asks bob to sign in again, and he carries on in a new channel.
test('bob carries on after his single node restarts', { timeout: 120000 }, () =>
  shotsOnFailure('restart', async () => {
    const alice = await signIn(browser, node.url, 'alice');
    const bob = await signIn(browser, node.url, 'bob');
    await createChannel(alice, 'before');
    await openConv(bob, '#before');
    await bob.click('#join-cta-btn');
    await bob.locator('#composer').waitFor();

    await bob.evaluate(() => {
      window.__states = [];
      const pill = document.getElementById('conn');
      new MutationObserver(() => window.__states.push(pill.dataset.state)).observe(pill, { attributes: true, attributeFilter: ['data-state'] });
    });
    await node.kill('SIGTERM');
    await node.start(); // same port, empty memory

    for (const page of [alice, bob]) {
      await page.locator('#login-notice', { hasText: 'Your session has ended' }).waitFor();
      await page.fill('#dev-username', page === alice ? 'alice' : 'bob');
      await page.press('#dev-username', 'Enter');
      await page.locator('#conn[data-state="online"]').waitFor();
      await page.locator('.item[data-key="#before"]').waitFor({ state: 'detached' });
    }
    const states = await bob.evaluate(() => window.__states);
    assert.ok(states.includes('waiting') || states.includes('connecting'), `bob's page showed the reconnect: ${states}`);

    await createChannel(bob, 'after');
    await openConv(alice, '#after');
    await alice.click('#join-cta-btn');
    await alice.locator('#composer').waitFor();
    await say(bob, 'new node, new channel');
    await message(alice, 'bob', 'new node, new channel').waitFor();
    await say(alice, 'welcome back');
    await message(bob, 'alice', 'welcome back').waitFor();
    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);
    await alice.context().close();
    await bob.context().close();
  }));
