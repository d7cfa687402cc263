// The web client against a two-node cluster on Redis: alice on node 2, bob
// on node 1 behind a TCP proxy ("the same URL"). Then bob's node goes away,
// twice, and bob carries on.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from '../lib/chatd.js';
import { twoNodes, recordStates } from '../lib/cluster.js';
import { signIn, openConv, say, message, shotsOnFailure, createChannel } from '../lib/browser.js';
import { chatScenario } from '../lib/scenario.js';
import { featureScenario } from '../lib/features.js';

let node1;
let node2;
let proxy;
let browser;
let stop;

before(async () => {
  ({ node1, node2, proxy, browser, stop } = await twoNodes('cluster'));
});

after(() => stop?.());

test('alice and bob chat across two nodes', { timeout: 180000 }, () =>
  shotsOnFailure('cluster', async () => {
    await chatScenario(browser, node2.url, proxy.url, 'cluster');
  }));

test('what people expect of a chat client, across two nodes', { timeout: 180000 }, () =>
  shotsOnFailure('features-cluster', async () => {
    await featureScenario(browser, node2.url, proxy.url, 'cluster');
  }));

test('bob carries on when his node shuts down or the network drops', { timeout: 180000 }, () =>
  shotsOnFailure('reconnect', async () => {
    const alice = await signIn(browser, node2.url, 'alice');
    const bob = await signIn(browser, proxy.url, 'bob');

    await createChannel(alice, 'ops');
    await openConv(bob, '#ops');
    await bob.click('#join-cta-btn');
    await bob.locator('#composer').waitFor();
    await say(alice, 'before anything breaks');
    await message(bob, 'alice', 'before anything breaks').waitFor();

    // 1. Node 1 shuts down (SIGTERM: it closes bob's websocket with 1001); the
    //    proxy now leads to node 2.
    await recordStates(bob);
    proxy.target = node2.port;
    await node1.kill('SIGTERM');
    const reconnected = bob.locator('#messages .notice-line', { hasText: 'Reconnected' });
    await reconnected.first().waitFor();
    await bob.locator('#conn[data-state="online"]').waitFor();
    let states = await bob.evaluate(() => window.__states);
    assert.ok(states.includes('connecting'), `bob's page showed the reconnect: ${states}`);
    assert.equal(states.at(-1), 'online');
    assert.equal(await bob.isVisible('#composer'), true, 'bob is still a member of #ops');
    await say(alice, 'still with us, bob?');
    await message(bob, 'alice', 'still with us, bob?').waitFor();
    await say(bob, 'yes, on node 2 now');
    await message(alice, 'bob', 'yes, on node 2 now').waitFor();

    // 2. Node 1 comes back on the same port, the proxy leads there again, and
    //    the network under bob's connection is cut (no close frame at all).
    await node1.start();
    await recordStates(bob);
    proxy.target = node1.port;
    proxy.dropAll();
    await reconnected.nth(1).waitFor();
    await bob.locator('#conn[data-state="online"]').waitFor();
    states = await bob.evaluate(() => window.__states);
    assert.ok(states.includes('waiting'), `bob's page showed the drop: ${states}`);
    await say(alice, 'and now?');
    await message(bob, 'alice', 'and now?').waitFor();
    await say(bob, 'back on node 1, carrying on');
    await message(alice, 'bob', 'back on node 1, carrying on').waitFor();
    await bob.screenshot({ path: path.join(artifacts, 'reconnected-cluster.png') });

    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);
    await alice.context().close();
    await bob.context().close();
  }));
