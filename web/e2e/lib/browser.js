// Debian's Chromium, headless, driven by playwright-core; one browser
// context per person so that each has their own cookies.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts } from './chatd.js';

const openPages = new Set(); // pages of this run that are still open

export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
}

/**
 * What every page of the tests records, before any of the page's own code
 * runs (an init script, which the page's CSP does not apply to):
 * - window.__csp: the Content-Security-Policy violations it reports;
 * - window.__notes and window.__asked: the desktop notifications it shows
 *   and how often it asks for the permission (the real Notification API
 *   still does the work: this only counts);
 * - window.__setHidden(bool): hides the tab. Headless Chromium under
 *   Playwright always reports a visible page (no API hides one), so this
 *   is the one thing emulated: document.visibilityState and its event.
 */
function recorder() {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push({ directive: e.violatedDirective, blocked: e.blockedURI }));
  if (typeof window.Notification === 'function') {
    const Real = window.Notification;
    window.__notes = [];
    window.__asked = 0;
    class Counted extends Real {
      constructor(title, opts = {}) {
        super(title, opts);
        window.__notes.push({ title, body: opts.body, tag: opts.tag });
      }
    }
    Counted.requestPermission = (...args) => {
      window.__asked++;
      return Real.requestPermission(...args);
    };
    window.Notification = Counted;
  }
  let hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
  window.__setHidden = (h) => {
    hidden = h;
    document.dispatchEvent(new Event('visibilitychange'));
  };
}

/**
 * A new browser context (one person's browser) with a page on baseURL
 * that records page errors, console errors and the rest (see recorder).
 * opts: viewport, colorScheme ('light'/'dark'), locale, timezoneId, and
 * notifications: true (granted), 'prompt' (not asked yet) or absent
 * (Playwright's default: denied).
 */
export async function newPage(browser, baseURL, person, opts = {}) {
  const { viewport = { width: 1200, height: 760 }, colorScheme = 'light', locale = 'en-US', timezoneId, notifications } = opts;
  // Reduced motion: no colour transitions half-way when a test looks (axe's
  // contrast checks, screenshots) right after a change.
  const context = await browser.newContext({ baseURL, viewport, colorScheme, locale, timezoneId, reducedMotion: 'reduce' });
  context.setDefaultTimeout(20000);
  await context.addInitScript(recorder);
  if (notifications === true) await context.grantPermissions(['notifications'], { origin: new URL(baseURL).origin });
  const page = watch(await context.newPage(), person);
  if (notifications === 'prompt') {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Browser.setPermission', { permission: { name: 'notifications' }, setting: 'prompt', origin: new URL(baseURL).origin });
  }
  return page;
}

/** Records a page's errors (for assertClean) and keeps it for shotsOnFailure. */
export function watch(page, person) {
  page.errors = [];
  page.consoleErrors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && page.consoleErrors.push(m.text()));
  page.person = person;
  openPages.add(page);
  page.on('close', () => openPages.delete(page));
  return page;
}

/**
 * Opens baseURL in a new context, signs in with dev login as name and waits
 * until the websocket is online. Page errors fail the test at the end
 * (see page.errors). opts as for newPage.
 */
export async function signIn(browser, baseURL, name, opts = {}) {
  const page = await newPage(browser, baseURL, name, opts);
  await page.goto('/');
  await page.locator('#dev-login').waitFor();
  await page.fill('#dev-username', name);
  await page.press('#dev-username', 'Enter');
  await page.locator('#conn[data-state="online"]').waitFor();
  assert.equal(await page.textContent('#me-name'), name);
  return page;
}

/** Asserts that the page ran without errors, in its scripts, its console or its policy. */
export async function assertClean(page) {
  assert.deepEqual(page.errors, [], `${page.person}: page errors`);
  assert.deepEqual(page.consoleErrors, [], `${page.person}: console errors`);
  assert.deepEqual(await page.evaluate(() => window.__csp), [], `${page.person}: policy violations`);
}

/** Creates a channel with the sidebar's + (which joins it too) and waits until it is open. */
export async function createChannel(page, name) {
  await page.click('#new-channel');
  await page.fill('#create-input', name);
  await page.press('#create-input', 'Enter');
  await page.locator('#title', { hasText: '#' + name.toLowerCase() }).waitFor();
  await page.locator('#composer').waitFor();
}

/** The buttons named Join that a person can see. */
export function visibleJoinButtons(page) {
  return page.locator('button:visible', { hasText: /^Join$/ });
}

/** The sidebar entry for a conversation key ("#lobby", "@bob"). */
export function item(page, key) {
  return page.locator(`.item[data-key="${key}"]`);
}

/** Opens a conversation from the sidebar. */
export async function openConv(page, key) {
  if ((await page.locator('#app').getAttribute('data-view')) === 'pane' && !(await item(page, key).isVisible())) {
    await page.click('#back');
  }
  await item(page, key).click();
  await page.locator('#title', { hasText: key }).waitFor();
}

/** Types text into the composer and presses Enter. */
export async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** The locator of a message (by its exact text) in the open conversation, from author. */
export function message(page, author, text) {
  return page.locator(`#messages .msg[data-user="${author}"] .text`).filter({ hasText: text });
}

/**
 * Runs fn; when it fails, saves a screenshot of every open page into
 * artifacts (named after label and the person) before passing the failure on.
 */
export async function shotsOnFailure(label, fn) {
  try {
    await fn();
  } catch (err) {
    for (const page of openPages) {
      await page.screenshot({ path: path.join(artifacts, `failed-${label}-${page.person}.png`) }).catch(() => {});
    }
    throw err;
  }
}
