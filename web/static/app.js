// The browser client: the login page, then the chat. Wires the Store (the
// model), the Connection (the websocket) and the page together.

import * as api from './api.js';
import { Connection } from './conn.js';
import { Store, MAX_ITEMS } from './store.js';
import { el, avatar, listItem, itemNode } from './view.js';
import { channelName, username, explain, closeWords, blank, CHANNEL_RULE, USERNAME_RULE } from './words.js';

const $ = (id) => document.getElementById(id);

/** Largest frame the client sends; the server closes with 1009 past CHAT_MAX_FRAME_BYTES (16384 by default). */
const MAX_FRAME = 16000;

let store = null;
let conn = null;
let loggingOut = false;
let ticker = 0;
const drafts = new Map(); // conversation key -> unsent text
const actionErrors = new Map(); // conversation key -> words
const sendErrors = new Map(); // conversation key -> words
let rendered = { key: null, last: null }; // what the message pane shows

// ---------------------------------------------------------------- boot

boot();

async function boot() {
  bindLogin();
  bindChat();
  try {
    const user = await api.me();
    if (user) startChat(user);
    else await showLogin();
  } catch (e) {
    $('boot').textContent = `The server can’t be reached (${e.message}). Reload the page to try again.`;
  }
}

// ---------------------------------------------------------------- login

async function showLogin(notice = '') {
  $('boot').hidden = true;
  $('app').hidden = true;
  $('login').hidden = false;
  document.title = 'Sign in · chat';
  setText($('login-notice'), notice);
  setText($('login-error'), '');
  const box = $('providers');
  box.replaceChildren();
  let list = [];
  try {
    list = await api.providers();
  } catch (e) {
    setText($('login-error'), `The list of ways to sign in could not be loaded (${e.message}). Reload the page to try again.`);
    return;
  }
  const dev = list.some((p) => p.name === 'dev');
  const others = list.filter((p) => p.name !== 'dev' && typeof p.login_url === 'string');
  for (const p of others) {
    box.append(el('a', { class: 'btn provider', href: p.login_url, 'data-provider': p.name }, `Continue with ${providerLabel(p.name)}`));
  }
  $('or').hidden = !(dev && others.length > 0);
  $('dev-login').hidden = !dev;
  $('no-providers').hidden = list.length > 0;
  if (dev) $('dev-username').focus();
}

function providerLabel(name) {
  const known = { github: 'GitHub', google: 'Google', gitlab: 'GitLab', oidc: 'single sign-on' };
  return known[name] || name.charAt(0).toUpperCase() + name.slice(1);
}

function bindLogin() {
  $('dev-login').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = username($('dev-username').value);
    if (!name) {
      setText($('login-error'), USERNAME_RULE);
      return;
    }
    const button = e.target.querySelector('button');
    button.disabled = true;
    setText($('login-error'), '');
    try {
      const user = await api.devLogin(name);
      startChat(user);
    } catch (err) {
      setText($('login-error'), err.message);
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- chat

function startChat(user) {
  $('boot').hidden = true;
  $('login').hidden = true;
  $('app').hidden = false;
  loggingOut = false;
  drafts.clear();
  actionErrors.clear();
  sendErrors.clear();
  rendered = { key: null, last: null };
  showMe(user.username);

  store = new Store();
  store.addEventListener('change', (e) => onStoreChange(e.detail));
  const c = new Connection(api.wsURL(), async () => (await api.me()) !== null);
  conn = c;
  c.addEventListener('state', () => c === conn && renderConn());
  c.addEventListener('welcome', (e) => {
    if (c !== conn) return;
    showMe(e.detail.frame.username);
    store.welcome(e.detail.frame, { reconnected: e.detail.reconnected });
  });
  c.addEventListener('frame', (e) => c === conn && onFrame(e.detail));
  renderAll();
  c.start();
}

function showMe(name) {
  $('me-name').textContent = name;
  $('me-avatar').replaceWith(Object.assign(avatar(name), { id: 'me-avatar' }));
}

function onFrame(f) {
  if (f.type === 'error') {
    // An error to a request without an id (or one we no longer wait for).
    const key = store.current;
    const words = explain(f);
    if (key) {
      actionErrors.set(key, words);
      renderPaneHead();
    } else {
      showBanner(words, null);
    }
    return;
  }
  store.frame(f);
}

function onStoreChange(d) {
  if (d.sidebar) renderSidebar();
  if (d.pane) renderPane();
  else if (d.appended && d.appended === store.current) appendMessages();
  document.title = titleText();
}

function titleText() {
  const n = store ? store.totalUnread() : 0;
  const where = store && store.current ? `${store.current} · ` : '';
  return `${n > 0 ? `(${n}) ` : ''}${where}chat`;
}

// ---------------------------------------------------------------- actions

/** Sends a request; on failure shows the server's error, in words, where errorTo says. */
async function request(req, errorTo) {
  errorTo(null);
  try {
    await conn.request(req);
    return true;
  } catch (err) {
    errorTo(explain(err, req));
    return false;
  }
}

function actionErrorFor(key) {
  return (words) => {
    if (words) actionErrors.set(key, words);
    else actionErrors.delete(key);
    if (store.current === key) renderPaneHead();
  };
}

function open(key) {
  saveDraft();
  store.open(key);
  $('app').dataset.view = key ? 'pane' : 'list';
  if (key && !matchMedia('(max-width: 720px)').matches) $('input').focus();
}

function saveDraft() {
  if (store && store.current) {
    const text = $('input').value;
    if (text) drafts.set(store.current, text);
    else drafts.delete(store.current);
  }
}

async function createChannel(input) {
  const show = (w) => setText($('create-error'), w || '');
  const name = channelName(input);
  if (!name) {
    show(CHANNEL_RULE);
    return;
  }
  const ok = await request({ type: 'command', action: 'create', target: name }, show);
  if (ok) {
    store.created(name);
    $('create-input').value = '';
    toggleForm('create', false);
    open(name);
  }
}

async function join(key) {
  await request({ type: 'command', action: 'join', target: key }, actionErrorFor(key));
}

async function leave(key) {
  await request({ type: 'command', action: 'leave', target: key }, actionErrorFor(key));
}

async function destroy(key) {
  const dlg = $('confirm');
  $('confirm-title').textContent = `Destroy ${key}?`;
  $('confirm-text').textContent = `${key} disappears for everyone, with all its memberships. This can’t be undone.`;
  dlg.returnValue = '';
  dlg.showModal();
  await new Promise((r) => dlg.addEventListener('close', r, { once: true }));
  if (dlg.returnValue !== 'ok') return;
  await request({ type: 'command', action: 'destroy', target: key }, actionErrorFor(key));
}

function openDirect(input) {
  const name = username(input);
  if (!name) {
    setText($('dm-error'), USERNAME_RULE);
    return;
  }
  setText($('dm-error'), '');
  $('dm-input').value = '';
  toggleForm('dm', false);
  open('@' + name);
}

async function send() {
  const key = store.current;
  const input = $('input');
  const text = input.value;
  if (!key || blank(text)) return;
  const showErr = (w) => {
    if (w) sendErrors.set(key, w);
    else sendErrors.delete(key);
    if (store.current === key) renderSendError();
  };
  const req = { type: 'message', target: key, message: text };
  if (new TextEncoder().encode(JSON.stringify(req)).length > MAX_FRAME) {
    showErr('That message is too long to send. Split it into smaller ones.');
    return;
  }
  if (conn.state !== 'online') {
    showErr('You are offline right now; your message is kept here until the connection is back.');
    return;
  }
  input.value = '';
  drafts.delete(key);
  autosize();
  const ok = await request(req, showErr);
  if (!ok) {
    // Give the text back so nothing the person wrote is lost.
    if (store.current === key && input.value === '') {
      input.value = text;
      autosize();
    } else if (!drafts.has(key)) {
      drafts.set(key, text);
    }
  }
}

async function logout() {
  loggingOut = true;
  $('logout').disabled = true;
  try {
    await api.logout();
  } catch (e) {
    loggingOut = false;
    showBanner(`Logging out failed (${e.message}). Try again.`, null);
    return;
  } finally {
    $('logout').disabled = false;
  }
  const c = conn;
  conn = null;
  if (c) c.stop();
  stopTicker();
  store = null;
  await showLogin('You are signed out.');
}

async function connectionEnded(c) {
  stopTicker();
  if (c.endCode === 1000) {
    if (loggingOut) return;
    conn = null;
    await showLogin('You were signed out (perhaps in another tab). Sign in again to carry on.');
    return;
  }
  if (c.endCode === 4401) {
    conn = null;
    await showLogin('Your session has ended. Please sign in again.');
    return;
  }
  // 1008: fell behind, or the session expired.
  const user = await api.me().catch(() => undefined);
  if (c !== conn || c.state !== 'ended') return;
  if (user === null) {
    conn = null;
    await showLogin('Your session expired. Please sign in again.');
    return;
  }
  showBanner(closeWords(c.endCode, c.endReason), 'Reconnect');
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderConn();
  renderSidebar();
  renderPane();
}

function renderConn() {
  const pill = $('conn');
  const state = conn ? conn.state : 'ended';
  pill.dataset.state = state;
  stopTicker();
  const text = $('conn-text');
  if (state === 'online') {
    text.textContent = 'Online';
    hideBanner();
  } else if (state === 'connecting' || state === 'idle') {
    text.textContent = conn.welcomed ? 'Reconnecting…' : 'Connecting…';
    if (conn.welcomed) showBanner('Connection lost. Reconnecting…', null);
  } else if (state === 'waiting') {
    const tick = () => {
      const s = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
      text.textContent = `Offline · retry in ${s}s`;
      const what = !conn.welcomed ? 'Can’t reach the server.' : conn.lastDrop && conn.lastDrop.code === 1001 ? 'The server is restarting.' : 'Connection lost.';
      showBanner(`${what} Reconnecting in ${s}s…`, 'Retry now');
    };
    tick();
    ticker = setInterval(tick, 1000);
  } else {
    text.textContent = 'Disconnected';
    if (conn && state === 'ended') connectionEnded(conn);
  }
  renderComposerState();
}

function stopTicker() {
  clearInterval(ticker);
  ticker = 0;
}

function showBanner(words, buttonText) {
  $('banner').hidden = false;
  $('banner-text').textContent = words;
  $('banner-retry').hidden = !buttonText;
  if (buttonText) $('banner-retry').textContent = buttonText;
}

function hideBanner() {
  $('banner').hidden = true;
}

function renderSidebar() {
  if (!store) return;
  const chans = store.channels();
  $('channel-list').replaceChildren(...chans.map((c) => listItem(c, store.current, open)));
  $('no-channels').hidden = chans.length > 0;
  $('dm-list').replaceChildren(...store.directs().map((c) => listItem(c, store.current, open)));
}

function renderPane() {
  const key = store ? store.current : null;
  const conv = key ? store.get(key) : null;
  $('empty').hidden = !!conv;
  $('messages').hidden = !conv;
  if (!conv) {
    const gone = store && store.lastGone;
    $('empty-title').textContent = gone || 'Pick a conversation';
    $('empty-text').textContent = gone
      ? 'Pick another conversation on the left.'
      : 'Open a channel on the left, create one with +, or message someone directly.';
    if (store) store.lastGone = '';
    $('app').dataset.view = gone ? $('app').dataset.view : 'list';
    $('title').textContent = 'chat';
    $('subtitle').textContent = '';
    $('messages').replaceChildren();
    rendered = { key: null, last: null };
  } else if (rendered.key !== key) {
    $('messages').replaceChildren();
    rendered = { key, last: null };
    $('input').value = drafts.get(key) || '';
    autosize();
    appendMessages(true);
  } else {
    appendMessages();
  }
  renderPaneHead();
  renderSendError();
  renderComposerState();
}

function renderPaneHead() {
  const key = store ? store.current : null;
  const conv = key ? store.get(key) : null;
  const isChannel = conv && conv.kind === 'channel';
  if (conv) {
    $('title').textContent = key;
    $('subtitle').textContent = isChannel
      ? [conv.joined ? 'You are a member' : 'You are not a member', conv.owned ? 'you own it' : ''].filter(Boolean).join(' · ')
      : `Private conversation with ${key.slice(1)}`;
  }
  $('join').hidden = !(isChannel && !conv.joined);
  $('leave').hidden = !(isChannel && conv.joined);
  $('destroy').hidden = !(isChannel && conv.owned);
  setText($('action-error'), (key && actionErrors.get(key)) || '');
}

function renderSendError() {
  const key = store ? store.current : null;
  setText($('send-error'), (key && sendErrors.get(key)) || '');
}

function renderComposerState() {
  const key = store ? store.current : null;
  const conv = key ? store.get(key) : null;
  const canWrite = conv && (conv.kind === 'direct' || conv.joined);
  $('composer').hidden = !canWrite;
  $('join-cta').hidden = !(conv && !canWrite);
  if (conv && !canWrite) $('join-cta-text').textContent = `You are not in ${key}. Join to read and write its messages.`;
  $('input').placeholder = key ? `Message ${key}` : 'Message';
  $('send').disabled = !conn || conn.state !== 'online';
}

/** Appends the open conversation's items that are not on the page yet. */
function appendMessages(jump = false) {
  const conv = store.get(store.current);
  if (!conv) return;
  const box = $('messages');
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  let from = rendered.last ? conv.items.lastIndexOf(rendered.last) + 1 : 0;
  if (rendered.last && from === 0) {
    // The oldest items were dropped past what was shown: draw it all again.
    box.replaceChildren();
  }
  const frag = document.createDocumentFragment();
  let mine = false;
  for (let i = from; i < conv.items.length; i++) {
    frag.append(...itemNode(conv.items, i));
    mine = mine || conv.items[i].mine;
  }
  if (conv.items.length > 0) rendered.last = conv.items[conv.items.length - 1];
  if (conv.items.length === 0) {
    box.replaceChildren(
      el('div', { class: 'intro' }, introText(conv)),
    );
  } else {
    box.querySelector('.intro')?.remove();
  }
  box.append(frag);
  // The store keeps the last MAX_ITEMS items; the page keeps about as many rows.
  while (box.childElementCount > MAX_ITEMS + 200) box.firstElementChild.remove();
  if (jump || nearBottom || mine) box.scrollTop = box.scrollHeight;
}

function introText(conv) {
  if (conv.kind === 'direct') return `This is your private conversation with ${conv.key.slice(1)}. Only the two of you see it.`;
  if (!conv.joined) return `Messages in ${conv.key} show here once you have joined.`;
  return `This is the start of ${conv.key} for you: messages from now on show here.`;
}

function toggleForm(which, show) {
  const form = $(`${which}-form`);
  const btn = $(which === 'create' ? 'new-channel' : 'new-dm');
  const visible = show === undefined ? form.hidden : show;
  form.hidden = !visible;
  btn.setAttribute('aria-expanded', String(visible));
  setText($(`${which}-error`), '');
  if (visible) $(`${which}-input`).focus();
}

function autosize() {
  const t = $('input');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 200)}px`;
}

function setText(node, words) {
  node.textContent = words || '';
  node.hidden = !words;
}

// ---------------------------------------------------------------- events

function bindChat() {
  $('new-channel').addEventListener('click', () => toggleForm('create'));
  $('new-dm').addEventListener('click', () => toggleForm('dm'));
  $('create-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createChannel($('create-input').value);
  });
  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    openDirect($('dm-input').value);
  });
  for (const which of ['create', 'dm']) {
    $(`${which}-input`).addEventListener('keydown', (e) => {
      if (e.key === 'Escape') toggleForm(which, false);
    });
  }
  $('join').addEventListener('click', () => join(store.current));
  $('join-cta-btn').addEventListener('click', () => join(store.current));
  $('leave').addEventListener('click', () => leave(store.current));
  $('destroy').addEventListener('click', () => destroy(store.current));
  // On a phone, going back to the list closes the conversation, so that what
  // arrives in it counts as unread.
  $('back').addEventListener('click', () => open(null));
  $('logout').addEventListener('click', logout);
  $('banner-retry').addEventListener('click', () => conn && conn.retryNow());
  window.addEventListener('online', () => conn && conn.retryNow());

  const input = $('input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener('input', () => {
    autosize();
    if (store && store.current && sendErrors.has(store.current)) {
      sendErrors.delete(store.current);
      renderSendError();
    }
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
    input.focus();
  });
}
