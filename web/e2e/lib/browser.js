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
 * Opens baseURL in a new context, signs in with dev login as name and waits
 * until the websocket is online. Page errors fail the test at the end
 * (see page.errors).
 */
export async function signIn(browser, baseURL, name, viewport = { width: 1200, height: 760 }) {
  const context = await browser.newContext({ baseURL, viewport });
  context.setDefaultTimeout(20000);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.person = name;
  openPages.add(page);
  page.on('close', () => openPages.delete(page));
  await page.goto('/');
  await page.locator('#dev-login').waitFor();
  await page.fill('#dev-username', name);
  await page.press('#dev-username', 'Enter');
  await page.locator('#conn[data-state="online"]').waitFor();
  assert.equal(await page.textContent('#me-name'), name);
  return page;
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
