// One chatd node in memory mode and a Chromium, for a test file: built,
// started and stopped together.

import fs from 'node:fs';
import { buildChatd, freePort, Node } from './chatd.js';
import { launch } from './browser.js';

/**
 * Builds chatd and starts a node named name, with a GitHub app that is
 * never reached (it only puts its button on the login page), and Chromium.
 * Returns {build, node, browser, stop}; stop ends all three.
 */
export async function singleNode(name) {
  const build = await buildChatd();
  let node;
  let browser;
  const stop = async () => {
    await browser?.close();
    await node?.kill();
    fs.rmSync(build.dir, { recursive: true, force: true });
  };
  try {
    node = new Node(build.bin, name, await freePort(), { CHAT_GITHUB_CLIENT_ID: 'e2e-client', CHAT_GITHUB_CLIENT_SECRET: 'e2e-secret' });
    await node.start();
    browser = await launch();
  } catch (err) {
    await stop();
    throw err;
  }
  return { build, node, browser, stop };
}
