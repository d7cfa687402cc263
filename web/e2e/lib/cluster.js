// Two chatd nodes on Redis (CHAT_REDIS_URL, default redis://127.0.0.1:6379/0,
// or CHAT_TEST_REDIS_URL), with a key prefix of their own that is removed at
// the end, a TCP proxy in front of node 1 ("the same URL"), and Chromium.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { buildChatd, freePort, Node } from './chatd.js';
import { Proxy } from './proxy.js';
import { launch } from './browser.js';

export const redisURL = process.env.CHAT_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';

/**
 * Builds chatd and starts node1 and node2 with env added to theirs, the
 * proxy (to node1) and Chromium. Returns {build, node1, node2, proxy,
 * browser, stop}; stop ends them all and removes the run's keys.
 */
export async function twoNodes(name, env = {}) {
  const prefix = `chat-e2e-${name}-${process.pid}-${Date.now()}:`;
  const build = await buildChatd();
  const c = { build };
  c.stop = async () => {
    await c.browser?.close();
    await c.proxy?.close();
    await c.node1?.kill();
    await c.node2?.kill();
    fs.rmSync(build.dir, { recursive: true, force: true });
    await dropKeys(prefix);
  };
  try {
    const all = { CHAT_REDIS_URL: redisURL, CHAT_REDIS_PREFIX: prefix, ...env };
    c.node1 = new Node(build.bin, `${name}-node1`, await freePort(), all);
    c.node2 = new Node(build.bin, `${name}-node2`, await freePort(), all);
    await Promise.all([c.node1.start(), c.node2.start()]);
    c.proxy = new Proxy(c.node1.port);
    await c.proxy.listen(0);
    c.browser = await launch();
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
}

/** Removes a run's keys from the shared Redis (best effort: redis-cli may be missing). */
function dropKeys(prefix) {
  const u = new URL(redisURL);
  const args = ['-h', u.hostname, '-p', u.port || '6379', '-n', u.pathname.slice(1) || '0'];
  const script = "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
  return new Promise((resolve) => execFile('redis-cli', [...args, 'EVAL', script, '0', prefix.replace(/[*?[\]\\]/g, '\\$&') + '*'], () => resolve()));
}

/** Records every state the connection pill of the web client goes through, from now on (page.__states). */
export function recordStates(page) {
  return page.evaluate(() => {
    window.__states = [];
    const pill = document.getElementById('conn');
    new MutationObserver(() => window.__states.push(pill.dataset.state)).observe(pill, { attributes: true, attributeFilter: ['data-state'] });
  });
}
