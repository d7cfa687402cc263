import { buildChatd, freePort, Node } from './lib/chatd.js';
import { launch, signIn, openConv } from './lib/browser.js';
const build = await buildChatd(); const node = new Node(build.bin, 'dbg', await freePort()); await node.start();
const browser = await launch();
async function round(n, closeFirst) {
  const alice = await signIn(browser, node.url, 'alice');
  const bob = await signIn(browser, node.url, 'bob');
  await alice.click('#new-channel'); await alice.fill('#create-input', 'c'+n); await alice.press('#create-input', 'Enter');
  await alice.locator('#title', {hasText:'#c'+n}).waitFor();
  await new Promise(r=>setTimeout(r,500));
  console.log(n, 'bob sees', await bob.locator('#channel-list .item').evaluateAll(es=>es.map(e=>e.dataset.key)));
  if (closeFirst==='logout') { await alice.click('#logout'); await alice.locator('#login').waitFor(); }
  await alice.context().close(); await bob.context().close();
}
try { await round(1); await round(2); await round(3,'logout'); await round(4); await round(5); }
finally { await browser.close(); await node.kill(); }
