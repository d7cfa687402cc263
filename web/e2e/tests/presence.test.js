// Who is here (spec sections 6 and 7, issue 15) in the web client, on two
// nodes on Redis: the member list of the open channel with its online dots
// kept live, "bob is typing…", and unread counts from the server's read
// markers that two tabs of one person on different nodes agree on and that
// survive a reload.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from '../lib/chatd.js';
import { twoNodes } from '../lib/cluster.js';
import { signIn, openConv, say, message, assertClean, shotsOnFailure, createChannel, watch, item } from '../lib/browser.js';

let node1;
let node2;
let browser;
let stop;
let alice; // alice's first tab, on node 1, through all the tests
let bob; // on node 2

before(async () => {
  ({ node1, node2, browser, stop } = await twoNodes('presence'));
});

after(() => stop?.());

/** The entry of name in the member list. */
function member(page, name) {
  return page.locator(`#member-list li[data-user="${name}"]`);
}

/** Joins key from the page, by its Join button. */
async function join(page, key) {
  await openConv(page, key);
  await page.click('#join-cta-btn');
  await page.locator('#composer').waitFor();
}

/** The sidebar entry of key once it shows n unread. */
function unread(page, key, n) {
  return page.locator(`.item[data-key="${key}"][data-unread="${n}"]`);
}

test('the member list of the open channel, its online dots and its changes, live', { timeout: 60000 }, () =>
  shotsOnFailure('members', async () => {
    alice = await signIn(browser, node1.url, 'alice');
    bob = await signIn(browser, node2.url, 'bob');
    const dave = await signIn(browser, node2.url, 'dave');
    await createChannel(alice, 'team');
    await join(bob, '#team');
    await join(dave, '#team');
    // dave goes away: he stays online through the grace (spec 6: 15 s); the
    // last test sees him go offline.
    await dave.context().close();

    await alice.locator('#members:not([hidden])').waitFor();
    await member(alice, 'dave').waitFor();
    assert.deepEqual(await alice.locator('#member-list li').evaluateAll((lis) => lis.map((li) => [li.dataset.user, li.dataset.online])), [
      ['alice', 'true'],
      ['bob', 'true'],
      ['dave', 'true'],
    ]);
    assert.equal(await alice.textContent('#members-count'), '3');
    assert.equal(await member(alice, 'bob').locator('.sr-only').textContent(), ' (online)', 'the dot is said in words too');

    // carol signs in for the first time and joins: she appears, online; she leaves: she goes.
    const carol = await signIn(browser, node1.url, 'carol');
    await join(carol, '#team');
    await alice.locator('#member-list li[data-user="carol"][data-online="true"]').waitFor();
    assert.equal(await alice.textContent('#members-count'), '4');
    await carol.click('#leave');
    await member(alice, 'carol').waitFor({ state: 'detached' });
    await assertClean(carol);
    await carol.context().close();

    // The list folds away and comes back with its button.
    await alice.click('#members-toggle');
    await alice.locator('#members').waitFor({ state: 'hidden' });
    assert.equal(await alice.getAttribute('#members-toggle', 'aria-expanded'), 'false');
    await alice.click('#members-toggle');
    await member(alice, 'bob').waitFor();
    await assertClean(alice);
    await assertClean(bob);
  }));

test('"bob is typing…" under the message box, in a channel and in a private conversation', { timeout: 60000 }, () =>
  shotsOnFailure('typing', async () => {
    await openConv(bob, '#team');
    await bob.fill('#input', 'I am writing someth');
    await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await alice.screenshot({ path: path.join(artifacts, 'members-typing.png') });
    await bob.press('#input', 'Enter');
    await message(alice, 'bob', 'I am writing someth').waitFor();
    assert.equal(await alice.textContent('#typing'), '', 'his message ends it');
    assert.equal(await bob.textContent('#typing'), '', 'nobody is told of their own typing');

    // In their private conversation: the event's target is @alice for bob's
    // typing, and it shows in alice's @bob.
    await alice.click('#new-dm');
    await alice.fill('#dm-input', 'bob');
    await alice.press('#dm-input', 'Enter');
    await alice.locator('#title', { hasText: '@bob' }).waitFor();
    await say(alice, 'a word in private?');
    await item(bob, '@alice').waitFor();
    await openConv(bob, '@alice');
    await bob.fill('#input', 'sure, what');
    await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await bob.press('#input', 'Enter');
    await message(alice, 'bob', 'sure, what').waitFor();
    assert.equal(await alice.textContent('#typing'), '');
    await assertClean(alice);
    await assertClean(bob);
  }));

test('unread counts from the read markers agree across two tabs on two nodes and survive a reload', { timeout: 60000 }, () =>
  shotsOnFailure('markers', async () => {
    // alice's second tab is on node 2 (the session cookie is the same).
    const tab2 = watch(await alice.context().newPage(), 'alice-tab2');
    await tab2.goto(node2.url);
    await tab2.locator('#conn[data-state="online"]').waitFor();
    await createChannel(alice, 'elsewhere');
    await openConv(tab2, '#elsewhere');

    await openConv(bob, '#team');
    for (const text of ['one', 'two', 'three']) await say(bob, text);
    await unread(alice, '#team', 3).waitFor();
    await unread(tab2, '#team', 3).waitFor();

    // Read in one tab (on screen: it opened), read in the other too.
    await openConv(alice, '#team');
    await message(alice, 'bob', 'three').waitFor();
    await unread(tab2, '#team', 0).waitFor();
    await tab2.reload();
    await tab2.locator('#conn[data-state="online"]').waitFor();
    assert.equal(await tab2.getAttribute('.item[data-key="#team"]', 'data-unread'), '0', 'still read after a reload');

    // Two more while neither tab looks: both count 2, and so does a reload.
    await openConv(alice, '#elsewhere');
    await say(alice, 'a note to myself'); // one's own messages are read, after a reload too
    await message(alice, 'alice', 'a note to myself').waitFor();
    await say(bob, 'four');
    await say(bob, 'five');
    await unread(alice, '#team', 2).waitFor();
    await unread(tab2, '#team', 2).waitFor();
    await alice.reload();
    await alice.locator('#conn[data-state="online"]').waitFor();
    assert.equal(await alice.getAttribute('.item[data-key="#team"]', 'data-unread'), '2');
    assert.equal(await alice.title(), '(2) chat');
    // Read in the second tab this time.
    await openConv(tab2, '#team');
    await message(tab2, 'bob', 'five').waitFor();
    await unread(alice, '#team', 0).waitFor();
    assert.equal(await alice.title(), 'chat');

    await assertClean(alice);
    await assertClean(tab2);
    await tab2.close();
  }));

test('a member who went away goes offline after the grace, and comes back online', { timeout: 60000 }, () =>
  shotsOnFailure('presence', async () => {
    await openConv(alice, '#team');
    await alice.locator('#member-list li[data-user="dave"][data-online="false"]').waitFor({ timeout: 40000 });
    assert.equal(await member(alice, 'dave').locator('.sr-only').textContent(), ' (offline)');
    await alice.screenshot({ path: path.join(artifacts, 'members-offline.png') });
    const dave = await signIn(browser, node1.url, 'dave');
    await alice.locator('#member-list li[data-user="dave"][data-online="true"]').waitFor();
    assert.equal(await member(alice, 'bob').getAttribute('data-online'), 'true');
    await assertClean(alice);
    await assertClean(bob);
    await assertClean(dave);
    for (const p of [alice, bob, dave]) await p.context().close();
  }));
