// The people-level scenario of issue 5, run against one node and against a
// two-node cluster: alice and bob sign in, talk in #lobby and privately, and
// alice leaves and destroys the channel while bob watches.

import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from './chatd.js';
import { signIn, item, openConv, say, message, assertClean, visibleJoinButtons, watch } from './browser.js';

/**
 * A time zone in which the clock now shows 6 or 7 in the morning, so that
 * times shown to a reader in it have a one-digit hour.
 */
export function morningZone(now = new Date()) {
  let offset = 6 - now.getUTCHours(); // hours east of UTC
  if (offset < -12) offset += 24;
  // Etc/GMT-5 is five hours east of UTC: the sign is the POSIX one.
  return offset === 0 ? 'Etc/GMT' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`;
}

/**
 * @param browser a launched Chromium
 * @param aliceURL, bobURL where each of them opens the client (one node, or two)
 * @param label names the screenshots
 */
export async function chatScenario(browser, aliceURL, bobURL, label) {
  const alice = await signIn(browser, aliceURL, 'alice');
  const bob = await signIn(browser, bobURL, 'bob', { timezoneId: morningZone() });

  // alice creates #lobby, and is in it at once (issue 20, 1): she owns it
  // (Destroy offered), can write, and sees no Join button at all. bob sees
  // it appear, not joined.
  await alice.click('#new-channel');
  await alice.fill('#create-input', 'Lobby');
  await alice.press('#create-input', 'Enter');
  await alice.locator('#title', { hasText: '#lobby' }).waitFor();
  await alice.locator('#destroy').waitFor();
  await alice.locator('#composer').waitFor();
  await alice.locator('#leave').waitFor();
  await alice.locator('#messages .notice-line', { hasText: 'You joined #lobby' }).waitFor();
  assert.equal(await item(alice, '#lobby').getAttribute('data-joined'), 'true');
  assert.equal(await visibleJoinButtons(alice).count(), 0);
  assert.equal(await alice.evaluate(() => document.activeElement.id), 'input', 'the focus is in the composer');
  await item(bob, '#lobby').waitFor();
  assert.equal(await item(bob, '#lobby').getAttribute('data-joined'), 'false');

  // A request the server refuses: the error is shown, in words, where it was tried.
  await alice.click('#new-channel');
  await alice.fill('#create-input', '#lobby');
  await alice.press('#create-input', 'Enter');
  await alice.locator('#create-error', { hasText: '#lobby already exists' }).waitFor();
  await alice.press('#create-input', 'Escape');

  // bob joins: one Join button on his screen, not two.
  await openConv(bob, '#lobby');
  assert.equal(await bob.isVisible('#destroy'), false, 'bob does not own #lobby');
  await bob.locator('#join-cta').waitFor();
  assert.equal(await visibleJoinButtons(bob).count(), 1);
  await bob.click('#join-cta-btn');
  await bob.locator('#composer').waitFor();
  assert.equal(await item(bob, '#lobby').getAttribute('data-joined'), 'true');
  await alice.locator('#messages .notice-line', { hasText: 'bob joined #lobby' }).waitFor();

  // They talk; each message shows its author and the local time of its ts,
  // as the reader's locale writes it: bob reads en-US in a time zone where
  // it is morning, so "6:07 AM", never "06:07 AM" (issue 20, 2).
  await say(alice, 'Hi bob, welcome to the lobby!');
  const hi = message(bob, 'alice', 'Hi bob, welcome to the lobby!');
  await hi.waitFor();
  const time = bob.locator('#messages .msg[data-user="alice"] time').first();
  const iso = await time.getAttribute('datetime');
  assert.match(iso, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const shown = await time.textContent();
  const local = await bob.evaluate((ts) => new Intl.DateTimeFormat(undefined, { timeStyle: 'short' }).format(new Date(ts)), iso);
  assert.equal(shown, local);
  assert.match(shown, /^[67]:\d\d\s[AP]M$/, 'a one-digit hour, no leading zero');
  // A run of one-line messages is single-spaced: a continued row is one
  // line of text tall (it was 46 px for 22 px of text).
  await say(alice, 'How are you?');
  const cont = bob.locator('#messages .msg.cont', { hasText: 'How are you?' });
  await cont.waitFor();
  const [rowHeight, lineHeight] = await cont.evaluate((row) => [row.getBoundingClientRect().height, parseFloat(getComputedStyle(row.querySelector('.text')).lineHeight)]);
  assert.ok(rowHeight <= lineHeight + 6, `a continued one-line row is ${rowHeight}px tall for ${lineHeight}px of text`);
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
  // alice reads it where she is: read markers outlive the page (spec 7),
  // and the next scenario counts her unread messages.
  await message(alice, 'bob', 'nothing, just testing').waitFor();
  await openConv(alice, '#lobby');
  await say(alice, 'back in the lobby');
  await bob.locator('.item[data-key="#lobby"][data-unread="1"]').waitFor();

  // A private message to nobody (issue 20, 3): `history @name` checks the
  // name before the conversation opens, so none opens, and the form stays
  // with the name to correct and the error under it.
  await bob.click('#new-dm');
  await bob.fill('#dm-input', 'nobody-here');
  await bob.press('#dm-input', 'Enter');
  await bob.locator('#dm-error', { hasText: 'There is nobody called @nobody-here' }).waitFor();
  assert.equal(await item(bob, '@nobody-here').count(), 0, 'no conversation with nobody');
  assert.equal(await bob.textContent('#title'), '@alice', 'bob is still where he was');
  assert.equal(await bob.inputValue('#dm-input'), 'nobody-here');
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'dm-input');
  await bob.fill('#dm-input', 'alice');
  await bob.press('#dm-input', 'Enter');
  await bob.locator('#dm-form').waitFor({ state: 'hidden' });
  await bob.locator('#title', { hasText: '@alice' }).waitFor();

  assert.equal(await alice.isVisible('#banner'), false, 'no connection trouble to report');
  assert.equal(await alice.getAttribute('#conn', 'data-state'), 'online');
  await alice.screenshot({ path: path.join(artifacts, `main-${label}.png`) });
  await openConv(bob, '#lobby');
  assert.equal(await item(bob, '#lobby').getAttribute('data-unread'), '0');

  // alice leaves; bob sees it. She still owns #lobby, and destroys it.
  await alice.click('#leave');
  await alice.locator('#join-cta-btn').waitFor();
  assert.equal(await alice.evaluate(() => document.activeElement.id), 'join-cta-btn');
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
  const aliceTab2 = watch(await alice.context().newPage(), 'alice-tab2');
  await aliceTab2.goto('/');
  await aliceTab2.locator('#conn[data-state="online"]').waitFor();
  await alice.click('#logout');
  await alice.locator('#login-notice', { hasText: 'You are signed out' }).waitFor();
  await aliceTab2.locator('#login-notice', { hasText: 'You were signed out' }).waitFor();
  await alice.reload();
  await alice.locator('#dev-login').waitFor();

  await assertClean(alice);
  await assertClean(bob);
  await assertClean(aliceTab2);
  await alice.context().close();
  await bob.context().close();
}
