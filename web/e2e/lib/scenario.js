// The people-level scenario of issue 5, run against one node and against a
// two-node cluster: alice and bob sign in, talk in #lobby and privately, and
// alice leaves and destroys the channel while bob watches.

import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from './chatd.js';
import { signIn, item, openConv, say, message } from './browser.js';

/**
 * @param browser a launched Chromium
 * @param aliceURL, bobURL where each of them opens the client (one node, or two)
 * @param label names the screenshots
 */
export async function chatScenario(browser, aliceURL, bobURL, label) {
  const alice = await signIn(browser, aliceURL, 'alice');
  const bob = await signIn(browser, bobURL, 'bob');

  // alice creates #lobby: she owns it (Destroy offered), bob sees it appear, not joined.
  await alice.click('#new-channel');
  await alice.fill('#create-input', 'Lobby');
  await alice.press('#create-input', 'Enter');
  await alice.locator('#title', { hasText: '#lobby' }).waitFor();
  await alice.locator('#destroy').waitFor();
  await item(bob, '#lobby').waitFor();
  assert.equal(await item(bob, '#lobby').getAttribute('data-joined'), 'false');

  // A request the server refuses: the error is shown, in words, where it was tried.
  await alice.click('#new-channel');
  await alice.fill('#create-input', '#lobby');
  await alice.press('#create-input', 'Enter');
  await alice.locator('#create-error', { hasText: '#lobby already exists' }).waitFor();
  await alice.press('#create-input', 'Escape');

  // Both join.
  await alice.click('#join');
  await alice.locator('#leave').waitFor();
  await alice.locator('#composer').waitFor();
  await openConv(bob, '#lobby');
  assert.equal(await bob.isVisible('#destroy'), false, 'bob does not own #lobby');
  await bob.locator('#join-cta').waitFor();
  await bob.click('#join-cta-btn');
  await bob.locator('#composer').waitFor();
  assert.equal(await item(bob, '#lobby').getAttribute('data-joined'), 'true');
  await alice.locator('#messages .notice-line', { hasText: 'bob joined #lobby' }).waitFor();

  // They talk; each message shows its author and the local time of its ts.
  await say(alice, 'Hi bob, welcome to the lobby!');
  const hi = message(bob, 'alice', 'Hi bob, welcome to the lobby!');
  await hi.waitFor();
  const time = bob.locator('#messages .msg[data-user="alice"] time').first();
  const iso = await time.getAttribute('datetime');
  assert.match(iso, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const shown = await time.textContent();
  const local = await bob.evaluate((ts) => new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' }).format(new Date(ts)), iso);
  assert.equal(shown, local);
  await say(bob, 'Thanks alice. Nice place.');
  await message(alice, 'bob', 'Thanks alice. Nice place.').waitFor();

  // Shift+Enter is a new line, Enter sends.
  await alice.fill('#input', 'first line');
  await alice.press('#input', 'Shift+Enter');
  await alice.type('#input', 'second line');
  await alice.press('#input', 'Enter');
  const two = message(bob, 'alice', 'second line');
  await two.waitFor();
  assert.equal(await two.evaluate((e) => e.textContent), 'first line\nsecond line');
  assert.equal(await alice.inputValue('#input'), '');

  // Markup in a message is text, never HTML.
  const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>';
  await say(bob, evil);
  const shownEvil = message(alice, 'bob', '<script>');
  await shownEvil.waitFor();
  assert.equal(await shownEvil.textContent(), evil);
  assert.equal(await shownEvil.locator('script, img, b').count(), 0);
  assert.equal(await alice.evaluate(() => window.__pwned), undefined);

  // bob writes to alice privately, starting the conversation by typing her name.
  await bob.click('#new-dm');
  await bob.fill('#dm-input', '@Alice');
  await bob.press('#dm-input', 'Enter');
  await bob.locator('#title', { hasText: '@alice' }).waitFor();
  await say(bob, 'psst, just between us');
  await message(bob, 'bob', 'psst, just between us').waitFor();
  // alice is still in #lobby: the conversation appears with an unread count.
  await item(alice, '@bob').waitFor();
  assert.equal(await item(alice, '@bob').getAttribute('data-unread'), '1');
  await openConv(alice, '@bob');
  await message(alice, 'bob', 'psst, just between us').waitFor();
  assert.equal(await item(alice, '@bob').getAttribute('data-unread'), '0');
  await say(alice, 'sure, what is it?');
  await message(bob, 'alice', 'sure, what is it?').waitFor();

  // A message in a channel that is not open counts as unread.
  await say(bob, 'nothing, just testing'); // bob stays in @alice
  await openConv(alice, '#lobby');
  await say(alice, 'back in the lobby');
  await bob.locator('.item[data-key="#lobby"][data-unread="1"]').waitFor();

  // A private message to nobody: the error shows under the composer.
  await bob.click('#new-dm');
  await bob.fill('#dm-input', 'nobody-here');
  await bob.press('#dm-input', 'Enter');
  await say(bob, 'hello?');
  await bob.locator('#send-error', { hasText: 'There is nobody called @nobody-here' }).waitFor();
  assert.equal(await bob.inputValue('#input'), 'hello?', 'the text that could not be sent is kept');

  assert.equal(await alice.isVisible('#banner'), false, 'no connection trouble to report');
  assert.equal(await alice.getAttribute('#conn', 'data-state'), 'online');
  await alice.screenshot({ path: path.join(artifacts, `main-${label}.png`) });
  await openConv(bob, '#lobby');
  assert.equal(await item(bob, '#lobby').getAttribute('data-unread'), '0');

  // alice leaves; bob sees it. She still owns #lobby, and destroys it.
  await alice.click('#leave');
  await alice.locator('#join').waitFor();
  assert.equal(await item(alice, '#lobby').getAttribute('data-joined'), 'false');
  await bob.locator('#messages .notice-line', { hasText: 'alice left #lobby' }).waitFor();
  await alice.click('#destroy');
  await alice.locator('#confirm[open]').waitFor();
  await alice.click('#confirm-ok');
  await item(alice, '#lobby').waitFor({ state: 'detached' });
  await item(bob, '#lobby').waitFor({ state: 'detached' });
  await bob.locator('#empty-title', { hasText: '#lobby was destroyed' }).waitFor();

  // Logging out leads back to the login page, in every tab of that session
  // (the server closes their websockets with 1000).
  const aliceTab2 = await alice.context().newPage();
  await aliceTab2.goto('/');
  await aliceTab2.locator('#conn[data-state="online"]').waitFor();
  await alice.click('#logout');
  await alice.locator('#login-notice', { hasText: 'You are signed out' }).waitFor();
  await aliceTab2.locator('#login-notice', { hasText: 'You were signed out' }).waitFor();
  await alice.reload();
  await alice.locator('#dev-login').waitFor();

  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await alice.context().close();
  await bob.context().close();
}
