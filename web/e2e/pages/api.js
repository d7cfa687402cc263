// The test page of chat-client.js's API (tests/module.test.js): it imports
// the module from the chat server named by ?server=, as a page of another
// origin would, and gives the tests a few helpers; the tests call the API
// itself through page.evaluate.

const server = new URLSearchParams(location.search).get('server');
const mod = await import(`${server}/chat-client.js`);

/** Clients by name, each with a log of everything it emitted. */
const clients = {};

/**
 * Opens a client named name (opts as for ChatClient) and resolves once it
 * is welcomed. Its log: messages, events, states, welcomes, resumed, gaps,
 * errors, in the order they came.
 */
async function open(name, url = server, opts = {}) {
  const c = new mod.ChatClient(url, opts);
  const log = { messages: [], events: [], states: [], welcomes: [], resumed: [], gaps: [], errors: [] };
  c.on('message', (m) => log.messages.push(m));
  c.on('event', (e) => log.events.push(e));
  c.on('state', (s) => log.states.push(s.state));
  c.on('welcome', (w) => log.welcomes.push({ reconnected: w.reconnected, epochChanged: w.epochChanged, latest: w.frame.latest }));
  c.on('resumed', (r) => log.resumed.push(r.counts));
  c.on('gap', (g) => log.gaps.push(g));
  c.on('error', (e) => log.errors.push(e.code));
  c.log = log;
  clients[name] = c;
  const welcomed = new Promise((resolve) => {
    const off = c.on('welcome', () => {
      off();
      resolve();
    });
  });
  c.connect();
  await welcomed;
  return c;
}

/** How a promise settled: {ok, value} or {ok: false, name, code, isChatError}. */
async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    return { ok: false, name: e.name, code: e.code, message: e.message, isChatError: e instanceof mod.ChatError };
  }
}

window.chat = { ...mod, server, clients, open, settle };
document.body.dataset.ready = 'true';
