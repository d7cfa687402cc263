// The page itself, on one node: its security policy at work in the browser
// (spec 9, issue 17 item 4), the login page (issue 20 item 7, issue 19
// item 3), and accessibility checked by axe-core in the page, on the main
// screens, light and dark, desktop and phone, with screenshots of each.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, Node, artifacts, repoRoot } from '../lib/chatd.js';
import { singleNode } from '../lib/single.js';
import { newPage, signIn, openConv, say, item, createChannel, assertClean, shotsOnFailure } from '../lib/browser.js';
import { audit, axeVersion } from '../lib/axe.js';

let build;
let node;
let browser;
let stop;

before(async () => {
  ({ build, node, browser, stop } = await singleNode('page'));
});

after(() => stop?.());

const desktop = { width: 1200, height: 760 };
const phone = { width: 390, height: 760 };

test('the page carries its security policy, works under it, and refuses inline script and framing', { timeout: 60000 }, () =>
  shotsOnFailure('csp', async () => {
    const page = await newPage(browser, node.url, 'csp');
    const resp = await page.goto('/');
    const csp = resp.headers()['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(resp.headers()['x-content-type-options'], 'nosniff');
    assert.equal(resp.headers()['referrer-policy'], 'same-origin');
    for (const asset of ['/app.js', '/style.css', '/icon.svg']) {
      const r = await page.request.get(asset);
      assert.equal(r.headers()['content-security-policy'], csp, asset);
    }

    // It works: dev login POSTs (same-origin Origin kept by the referrer
    // policy), and the websocket to its own ws: origin opens under connect-src.
    await page.locator('#dev-login').waitFor();
    await page.fill('#dev-username', 'csp');
    await page.press('#dev-username', 'Enter');
    await page.locator('#conn[data-state="online"]').waitFor();
    await createChannel(page, 'policy');
    await say(page, 'works under the policy');
    await page.locator('#messages .text', { hasText: 'works under the policy' }).waitFor();
    await assertClean(page);

    // An inline script and an inline style are refused, and reported.
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inline = 1';
      document.body.append(s);
      document.getElementById('title').setAttribute('style', 'color: rgb(255, 0, 0)');
    });
    await page.waitForFunction(() => window.__csp.length >= 2);
    assert.equal(await page.evaluate(() => window.__inline), undefined, 'the inline script did not run');
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.getElementById('title')).color), 'rgb(255, 0, 0)');
    const seen = await page.evaluate(() => window.__csp.map((v) => `${v.directive} ${v.blocked}`));
    assert.ok(seen.includes('script-src-elem inline'), `violations: ${seen}`);
    assert.ok(seen.includes('style-src-attr inline'), `violations: ${seen}`);
    assert.ok(page.consoleErrors.some((m) => m.includes('Content Security Policy')), 'the console says why');

    // Another origin cannot frame the page.
    const framer = await newPage(browser, node.url, 'framer');
    await framer.setContent(`<iframe src="${node.url}/" title="chat"></iframe>`); // waits for the frame's load too
    const frame = framer.frames().find((f) => f !== framer.mainFrame());
    assert.ok(frame.url().startsWith('chrome-error://'), `the frame shows ${frame.url()}, not the chat`);
    await framer.context().close();
    await page.context().close();
  }));

test('the login page: no 401 in the console, and it does not jump when an error appears', { timeout: 60000 }, () =>
  shotsOnFailure('login', async () => {
    const page = await newPage(browser, node.url, 'visitor');
    const asked = [];
    page.on('request', (r) => asked.push(new URL(r.url()).pathname));
    await page.goto('/');
    await page.locator('#dev-login').waitFor();
    await page.locator('#providers a[data-provider="github"]').waitFor();
    assert.ok(!asked.includes('/auth/me'), `a signed-out load asks no /auth/me: ${asked}`);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'dev-username');

    const where = () =>
      page.evaluate(() => ['.login-card', '#dev-username', '#providers'].map((s) => document.querySelector(s).getBoundingClientRect().top));
    const beforeError = await where();
    await page.fill('#dev-username', 'not a name');
    await page.press('#dev-username', 'Enter');
    await page.locator('#login-error').waitFor();
    assert.deepEqual(await where(), beforeError, 'nothing above the error moved');
    await assertClean(page);
    await page.context().close();
  }));

test('with no way to sign in, the login page says how to configure one', { timeout: 60000 }, () =>
  shotsOnFailure('no-login', async () => {
    const bare = new Node(build.bin, 'no-login', await freePort(), { CHAT_DEV_LOGIN: 'false' });
    await bare.start();
    try {
      const page = await newPage(browser, bare.url, 'visitor');
      await page.goto('/');
      const box = page.locator('#no-providers');
      await box.waitFor();
      assert.equal(await page.isVisible('#dev-login'), false);
      const text = await box.textContent();
      for (const words of ['No way to sign in is configured', 'CHAT_GITHUB_CLIENT_ID', 'CHAT_DEV_LOGIN=true', 'docs/login.md']) {
        assert.ok(text.includes(words), `the page says ${words}`);
      }
      assert.equal(await page.getAttribute('#login-doc', 'href'), 'https://github.com/wirechat/chat/blob/main/docs/login.md');
      assert.ok(fs.existsSync(path.join(repoRoot, 'docs/login.md')), 'the file it names exists');
      const found = await audit(page, 'no login method');
      assert.deepEqual(found.filter(serious), []);
      await page.screenshot({ path: path.join(artifacts, 'login-none-desktop-light.png') });
      await assertClean(page);
      await page.context().close();
    } finally {
      await bare.kill();
    }
  }));

function serious(v) {
  return v.impact === 'serious' || v.impact === 'critical';
}

// axe-core in the page on each main screen, light and dark, desktop and
// phone: no serious or critical violation, and any other one is listed in
// docs/web.md. Each screen is also a screenshot in artifacts/.
test('accessibility: axe-core finds nothing serious on the main screens', { timeout: 120000 }, (t) =>
  shotsOnFailure('a11y', async () => {
    const found = [];
    const variants = [
      ['desktop', 'light'],
      ['desktop', 'dark'],
      ['phone', 'light'],
      ['phone', 'dark'],
    ];
    /** Audits and photographs page as it is, in every variant; back to desktop light after. */
    async function check(page, screen, prepare = async () => {}) {
      for (const [size, scheme] of variants) {
        await page.setViewportSize(size === 'phone' ? phone : desktop);
        await page.emulateMedia({ colorScheme: scheme });
        await prepare(size);
        const where = `${screen}, ${size}, ${scheme}`;
        found.push(...(await audit(page, where)));
        await page.screenshot({ path: path.join(artifacts, `${screen}-${size}-${scheme}.png`) });
      }
      await page.setViewportSize(desktop);
      await page.emulateMedia({ colorScheme: 'light' });
    }

    // The login page.
    const visitor = await newPage(browser, node.url, 'visitor');
    await visitor.goto('/');
    await visitor.locator('#dev-login').waitFor();
    await check(visitor, 'login');
    await visitor.context().close();

    // An empty chat: signed in, nothing open yet.
    const dana = await signIn(browser, node.url, 'dana');
    await check(dana, 'empty', async (size) => {
      if (size === 'phone' && (await dana.isVisible('#back'))) await dana.click('#back');
    });

    // A busy channel: two people, formatting, links, mentions, notices, a
    // private message and unread counts elsewhere.
    const erin = await signIn(browser, node.url, 'erin');
    await createChannel(erin, 'other');
    await createChannel(erin, 'busy');
    await openConv(dana, '#busy');
    await dana.click('#join-cta-btn');
    await dana.locator('#composer').waitFor();
    const lines = [
      [erin, 'Morning! The **release** is today.'],
      [erin, 'Checklist is at https://example.com/release/checklist'],
      [dana, 'Great. I will run `make test` first.'],
      [dana, '@erin did the _migration_ land?'],
      [erin, 'It did:\n```\n$ chatd version\nchatd 1.4.0\n```'],
      [erin, '@dana can you check the dashboards?'],
      [dana, 'On it.'],
      [erin, 'A long line to see how the text wraps in a narrow window, with a long word too: supercalifragilisticexpialidocious.'],
      [dana, 'Looks fine here.'],
      [erin, 'Thanks!'],
    ];
    for (const [i, [who, text]] of lines.entries()) {
      await say(who, text);
      await dana.locator('#messages .msg .text').nth(i).waitFor();
    }
    await openConv(erin, '#other');
    await say(erin, 'nobody reads this yet');
    await erin.click('#new-dm');
    await erin.fill('#dm-input', 'dana');
    await erin.press('#dm-input', 'Enter');
    // The conversation opens after a round trip: typed before, the word
    // would go to #other.
    await erin.locator('#title', { hasText: '@dana' }).waitFor();
    await say(erin, 'a private word');
    await item(dana, '@erin').waitFor();
    await check(dana, 'busy', async (size) => {
      if (size === 'phone' && !(await dana.isVisible('#title'))) await openConv(dana, '#busy');
    });

    // The phone's list of conversations, with the unread badges.
    await dana.setViewportSize(phone);
    await dana.click('#back');
    await dana.locator('.sidebar').waitFor();
    for (const scheme of ['light', 'dark']) {
      await dana.emulateMedia({ colorScheme: scheme });
      found.push(...(await audit(dana, `list, phone, ${scheme}`)));
      await dana.screenshot({ path: path.join(artifacts, `list-phone-${scheme}.png`) });
    }
    await dana.setViewportSize(desktop);
    await dana.emulateMedia({ colorScheme: 'light' });
    await openConv(dana, '#busy');

    // Dialogs: the quick switcher, and the confirmation to destroy a channel.
    await check(dana, 'switcher', async () => {
      if (!(await dana.isVisible('#switcher'))) {
        await dana.keyboard.press('Control+k');
        await dana.locator('#switcher[open]').waitFor();
      }
    });
    await dana.keyboard.press('Escape');
    await createChannel(dana, 'mine');
    await check(dana, 'confirm', async () => {
      if (!(await dana.isVisible('#confirm'))) {
        if (await dana.isVisible('#back')) await openConv(dana, '#mine');
        await dana.click('#destroy');
        await dana.locator('#confirm[open]').waitFor();
      }
    });
    await dana.keyboard.press('Escape');
    await assertClean(dana);
    await assertClean(erin);
    await dana.context().close();
    await erin.context().close();

    // Nothing serious or critical; the rest is known and written down.
    const bad = found.filter(serious);
    assert.deepEqual(bad, [], `serious or critical violations (axe-core ${axeVersion})`);
    const docs = fs.readFileSync(path.join(repoRoot, 'docs/web.md'), 'utf8');
    const rest = [...new Set(found.map((v) => `${v.id} (${v.impact})`))];
    t.diagnostic(`axe-core ${axeVersion}: ${found.length} minor or moderate findings: ${rest.join(', ') || 'none'}`);
    for (const v of found) t.diagnostic(`  ${v.id} (${v.impact}) on ${v.where}: ${v.targets.join(', ')}`);
    for (const v of found) assert.ok(docs.includes('`' + v.id + '`'), `docs/web.md lists axe's ${v.id} (${v.impact}) seen on ${v.where}: ${v.help}`);
  }));
