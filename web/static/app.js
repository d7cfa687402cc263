// The browser client: the login page, then the chat. Wires the Store (the
// model), the ChatClient (chat-client.js: the websocket, its requests,
// reconnects and resume) and the page together.

import * as api from './api.js';
import { ChatClient } from './chat-client.js';
import { Store, oldestSeq, TYPING_SHOWN } from './store.js';
import { Notifier } from './notify.js';
import { plainText } from './format.js';
import { el, avatar, listItem, itemNode } from './view.js';
import { channelName, username, explain, closeWords, blank, CHANNEL_RULE, USERNAME_RULE } from './words.js';

const $ = (id) => document.getElementById(id);

/** Largest frame the client sends; the server closes with 1009 past CHAT_MAX_FRAME_BYTES (16384 by default). */
const MAX_FRAME = 16000;

/** How many notices (a channel gone, …) stay on screen at once. */
const MAX_TOASTS = 3;

/** Messages per history page: when a conversation opens, and each scroll to the top. */
const PAGE = 50;

/** How close to the top (px) the scroll has to come for the next older page to load. */
const NEAR_TOP = 48;

/** How often (ms) the person's typing is told to the others at most: the server's own limit (spec 6). */
const TYPING_EVERY = 3000;

/** How long (ms) read markers gather before they go to the server: one request for a burst of messages. */
const READ_DELAY = 400;

let store = null;
let conn = null;
let loggingOut = false;
let ticker = 0;
const drafts = new Map(); // conversation key -> unsent text
const actionErrors = new Map(); // conversation key -> words
const sendErrors = new Map(); // conversation key -> words
let rendered = { key: null, last: null }; // what the message pane shows: the conversation and its last item drawn
let carried = ''; // text written to a user who does not exist, for the next conversation opened
const typingSent = new Map(); // conversation key -> when the person's typing was last told (ms)
let typingTimer = 0; // redraws "… is typing" when the oldest one runs out
const pendingReads = new Map(); // conversation key -> read marker not yet told to the server
let readTimer = 0;
let membersOpen = matchMedia('(min-width: 1000px)').matches; // the member list is shown (toggled by its button)
const notifier = new Notifier((key) => store && openAndFocus(key));

// ---------------------------------------------------------------- boot

boot();

async function boot() {
  bindLogin();
  bindChat();
  bindKeys();
  try {
    const user = (await api.maybeSignedIn()) ? await api.me() : null;
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
  $('toasts').replaceChildren();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
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
  else if (others.length > 0) box.firstElementChild.focus();
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
      $('dev-username').focus();
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
      $('dev-username').focus();
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
  carried = '';
  typingSent.clear();
  pendingReads.clear();
  rendered = { key: null, last: null };
  showMe(user.username);
  renderBell();

  store = new Store();
  store.addEventListener('change', (e) => onStoreChange(e.detail));
  // The page's own origin; a refused upgrade is checked against /auth/me.
  const c = new ChatClient(undefined, { signedIn: async () => (await api.me()) !== null });
  conn = c;
  const mine = (fn) => (d) => c === conn && fn(d);
  c.on('state', mine(renderConn));
  c.on('welcome', mine((d) => {
    showMe(d.frame.username);
    store.welcome(d.frame, { epochChanged: d.epochChanged });
    // Markers read here but not yet told (offline meanwhile) still count.
    for (const [key, seq] of pendingReads) store.readUpTo(key, seq);
    flushReads();
    // The open conversation's history, if it was not read yet (opened
    // while offline), and its members anew (their events were missed).
    if (store.current) {
      loadHistory(store.current);
      loadMembers(store.current);
    }
  }));
  c.on('message', mine((f) => store.message(f)));
  c.on('event', mine((f) => store.frame(f)));
  c.on('resumed', mine((d) => store.resumed(d.counts)));
  c.on('error', mine(unanswered));
  renderAll();
  c.connect();
}

function showMe(name) {
  $('me-name').textContent = name;
  $('me-avatar').replaceWith(Object.assign(avatar(name), { id: 'me-avatar' }));
}

/** An error to a request without an id (or one no longer waited for). */
function unanswered(err) {
  const key = store.current;
  const words = explain(err);
  if (key) {
    actionErrors.set(key, words);
    renderPaneHead();
  } else {
    showBanner(words, null);
  }
}

function onStoreChange(d) {
  if (d.sidebar) renderSidebar();
  if (d.pane) renderPane(d.keepScroll);
  else if (d.appended && d.appended === store.current) appendMessages();
  else if (d.edge && d.edge === store.current) renderEdge();
  if (d.members && d.members === store.current) renderMembers();
  if (d.typing && d.typing === store.current) renderTyping();
  if (d.appended === store.current || d.pane || d.opened) readOnScreen();
  if (d.gone) channelGone(d.gone);
  if (d.incoming) incoming(d.incoming);
  document.title = titleText();
}

function titleText() {
  const n = store ? store.totalUnread() : 0;
  const where = store && store.current ? `${store.current} · ` : '';
  return `${n > 0 ? `(${n}) ` : ''}${where}chat`;
}

/** A channel went away: said once, in the pane if it was open, else as a notice if the person was in it. */
function channelGone(g) {
  if (g.open) {
    closeForms();
    if (document.activeElement === document.body || !document.activeElement) $('new-channel').focus();
  } else if (g.member) {
    toast(g.words);
  }
}

/** A message from someone else: a desktop notification and a spoken line when it is for the person. */
function incoming({ key, item }) {
  const direct = key.startsWith('@');
  if (!direct && !item.mentionsMe) return;
  const title = direct ? `${item.username} (private)` : `${item.username} in ${key}`;
  notifier.message(key, title, plainText(item.nodes));
  if (key !== store.current) announce(direct ? `New private message from ${item.username}` : `${item.username} mentioned you in ${key}`);
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

/** Opens a conversation (null: none); any open side form closes. */
function open(key) {
  saveDraft();
  closeForms();
  store.open(key);
  if (key) {
    notifier.seen(key);
    loadHistory(key);
    loadMembers(key);
  }
  $('app').dataset.view = key ? 'pane' : 'list';
  if (key && !matchMedia('(max-width: 720px)').matches) focusPane();
}

/** Opens a conversation and puts the focus in it, whatever the screen size (keyboard use). */
function openAndFocus(key) {
  open(key);
  focusPane();
}

/** The focus goes where the person acts next: the composer, or the Join button. */
function focusPane() {
  if (!$('composer').hidden) $('input').focus();
  else if (!$('join-cta').hidden) $('join-cta-btn').focus();
}

function saveDraft() {
  if (store && store.current) {
    const text = $('input').value;
    if (text) drafts.set(store.current, text);
    else drafts.delete(store.current);
  }
}

/**
 * Creates a channel and joins it: the protocol keeps the two apart, but a
 * person who creates a channel means to be in it.
 */
async function createChannel(input) {
  const show = (w) => setText($('create-error'), w || '');
  const name = channelName(input);
  if (!name) {
    show(CHANNEL_RULE);
    return;
  }
  const ok = await request({ type: 'command', action: 'create', target: name }, show);
  if (!ok) return;
  store.created(name);
  $('create-input').value = '';
  open(name);
  await join(name);
}

async function join(key) {
  if (await request({ type: 'command', action: 'join', target: key }, actionErrorFor(key))) {
    store.membership(key, true);
    if (store.current === key) {
      focusPane();
      loadHistory(key);
    }
  }
}

/**
 * Reads a page of key's history: the newest one when the conversation has
 * not been read yet, else (older) the page before the oldest message held,
 * when there is one. A channel one is not in has none to read.
 */
async function loadHistory(key, older = false) {
  const c = store && store.get(key);
  if (!c || c.loading || !conn || conn.state !== 'online') return;
  if (c.kind === 'channel' && !c.joined) return;
  if (older ? !c.loaded || !c.more : c.loaded) return;
  const before = older ? oldestSeq(c) : null;
  store.loading(key, true);
  try {
    const page = await conn.history(key, before ? { before, limit: PAGE } : { limit: PAGE });
    if (store && store.get(key) === c) store.historyPage(key, page);
  } catch (err) {
    if (!store || store.get(key) !== c) return;
    store.loading(key, false);
    if (err.code !== 'offline' && err.code !== 'disconnected') actionErrorFor(key)(explain(err, { type: 'command', action: 'history', target: key }));
  }
}

async function leave(key) {
  if (await request({ type: 'command', action: 'leave', target: key }, actionErrorFor(key))) {
    store.membership(key, false);
    if (store.current === key) focusPane();
  }
}

async function destroy(key) {
  const dlg = $('confirm');
  $('confirm-title').textContent = `Destroy ${key}?`;
  $('confirm-text').textContent = `${key} disappears for everyone, with all its memberships. This can’t be undone.`;
  dlg.returnValue = '';
  dlg.showModal();
  await new Promise((r) => dlg.addEventListener('close', r, { once: true }));
  if (dlg.returnValue !== 'ok') {
    $('destroy').focus();
    return;
  }
  await request({ type: 'command', action: 'destroy', target: key }, actionErrorFor(key));
  if (!$('destroy').hidden) $('destroy').focus();
}

/** Lists a channel's members (the open one's, when it was not listed since the last welcome). */
async function loadMembers(key) {
  const c = store && store.get(key);
  if (!c || c.kind !== 'channel' || c.members || !conn || conn.state !== 'online') return;
  try {
    const list = await conn.allMembers(key);
    if (store && store.get(key) === c) store.setMembers(key, list);
  } catch {
    // Gone meanwhile, or offline: the next open or welcome asks again.
  }
}

/**
 * Moves the open conversation's read marker to its newest message when the
 * person can see it (spec 7): the tab is visible and the list is at its
 * end. This page counts it read at once; the server is told a moment later,
 * and tells the person's other tabs and devices.
 */
function readOnScreen() {
  const key = store && store.current;
  const c = key && store.get(key);
  if (!c || c.latest <= c.read || document.visibilityState !== 'visible') return;
  if (c.kind === 'channel' && !c.joined) return;
  const box = $('messages');
  if (box.scrollHeight - box.scrollTop - box.clientHeight > 80) return; // reading older messages
  pendingReads.set(key, c.latest);
  store.readUpTo(key, c.latest);
  clearTimeout(readTimer);
  readTimer = setTimeout(flushReads, READ_DELAY);
}

/** Tells the server the read markers gathered; those that could not go wait for the next welcome. */
function flushReads() {
  clearTimeout(readTimer);
  if (!conn || conn.state !== 'online') return;
  const c = conn;
  for (const [key, seq] of pendingReads) {
    pendingReads.delete(key);
    c.read(key, seq).catch((err) => {
      if ((err.code === 'offline' || err.code === 'disconnected') && c === conn && !(pendingReads.get(key) >= seq)) pendingReads.set(key, seq);
    });
  }
}

/** The person is typing in the open conversation: the others are told, at most every TYPING_EVERY ms. */
function typing() {
  const key = store && store.current;
  if (!key || !conn || conn.state !== 'online' || blank($('input').value)) return;
  const now = Date.now();
  if (now - (typingSent.get(key) || 0) < TYPING_EVERY) return;
  typingSent.set(key, now);
  conn.typing(key).catch(() => {});
}

/**
 * Opens the private conversation with the user typed in the form, once
 * `history @name` has told that the user exists (its answer is the
 * conversation's first page, too). A name nobody has stays in the form,
 * with the error under it. Offline, the conversation opens unchecked.
 */
async function openDirect(input) {
  const name = username(input);
  const show = (w) => setText($('dm-error'), w || '');
  if (!name) {
    show(USERNAME_RULE);
    return;
  }
  show('');
  const key = '@' + name;
  const known = store.get(key);
  if (!(known && known.confirmed) && conn && conn.state === 'online') {
    const button = $('dm-form').querySelector('button');
    button.disabled = true;
    let page;
    try {
      page = await conn.history(key, { limit: PAGE });
    } catch (err) {
      if (err.code !== 'offline' && err.code !== 'disconnected') {
        show(err.code === 'not_found' ? `There is nobody called ${key}. Check the name.` : explain(err, { type: 'command', action: 'history', target: key }));
        $('dm-input').focus();
        return;
      }
    } finally {
      button.disabled = false;
    }
    if (!store) return;
    if (page) store.historyPage(key, page);
  }
  $('dm-input').value = '';
  if (carried && !drafts.has(key)) drafts.set(key, carried);
  carried = '';
  open(key);
}

/**
 * The first message to a user who does not exist fails (a conversation
 * opened while offline, unchecked): the conversation was never real, so
 * it goes, and the form to open one comes back with the name in it. The
 * text written is kept for the next conversation opened.
 */
function nobody(key, text) {
  sendErrors.delete(key);
  drafts.delete(key);
  store.closeDirect(key);
  carried = text;
  toggleForm('dm', true);
  $('dm-input').value = key.slice(1);
  $('dm-input').select();
  setText($('dm-error'), `There is nobody called ${key}, so that conversation was closed. Check the name: your message goes to the conversation you open next.`);
  $('app').dataset.view = 'list';
}

/** Closes a private conversation from the sidebar; the focus moves to its neighbour. */
function closeConversation(key) {
  const keys = store.directs().map((c) => c.key);
  const i = keys.indexOf(key);
  const next = keys[i + 1] || keys[i - 1];
  const wasCurrent = store.current === key;
  saveDraft();
  store.closeDirect(key);
  if (wasCurrent) $('app').dataset.view = 'list';
  const target = next ? document.querySelector(`#dm-list .item[data-key="${CSS.escape(next)}"]`) : $('new-dm');
  (target || $('new-dm')).focus();
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
  showErr(null);
  try {
    // Resolves with the seq once stored; a drop before the answer makes
    // chat-client.js send it again with the same id (stored once).
    const seq = await conn.send(key, text);
    // What one wrote oneself is read: the server's marker says so too, or
    // a reload would count it unread.
    if (!(pendingReads.get(key) >= seq)) pendingReads.set(key, seq);
    flushReads();
    return;
  } catch (err) {
    const conv = store.get(key);
    if (err.code === 'not_found' && conv && conv.kind === 'direct' && !conv.confirmed) {
      nobody(key, text);
      return;
    }
    showErr(explain(err, req));
  }
  // Give the text back so nothing the person wrote is lost.
  if (store.current === key && input.value === '') {
    input.value = text;
    autosize();
  } else if (!drafts.has(key)) {
    drafts.set(key, text);
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
  if (c) c.close();
  stopTicker();
  notifier.closeAll();
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

async function toggleNotifications() {
  const state = await notifier.toggle();
  renderBell();
  if (state === 'denied') toast('Desktop notifications are blocked for this site. Allow them in the browser’s site settings, then press the bell again.');
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

/** A notice that stays until it is dismissed (the newest MAX_TOASTS of them); the region speaks it. */
function toast(words) {
  const box = $('toasts');
  const t = el('div', { class: 'toast' }, el('span', {}, words));
  t.append(el('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Dismiss', title: 'Dismiss', onclick: () => t.remove() }, '×'));
  box.append(t);
  while (box.childElementCount > MAX_TOASTS) box.firstElementChild.remove();
}

/** Says something to screen readers only. */
function announce(words) {
  $('announce').textContent = words;
}

function renderBell() {
  const b = $('notify');
  const state = notifier.state;
  b.hidden = state === 'unsupported';
  b.dataset.state = state;
  b.setAttribute('aria-pressed', String(state === 'on'));
  b.title = {
    default: 'Turn on desktop notifications for private messages and mentions',
    on: 'Desktop notifications are on for private messages and mentions while this tab is hidden (press to turn them off)',
    off: 'Desktop notifications are off (press to turn them on)',
    denied: 'Desktop notifications are blocked in this browser’s site settings',
  }[state] || '';
}

function renderSidebar() {
  if (!store) return;
  // Keep the keyboard focus on the same entry across the re-render.
  const focused = document.activeElement;
  const focusKey = focused && focused.closest('.list') ? focused.dataset.key || focused.dataset.close : null;
  const focusClose = focused && focused.classList.contains('close-conv');
  const chans = store.channels();
  $('channel-list').replaceChildren(...chans.map((c) => listItem(c, store.current, open, closeConversation)));
  $('no-channels').hidden = chans.length > 0;
  $('dm-list').replaceChildren(...store.directs().map((c) => listItem(c, store.current, open, closeConversation)));
  if (focusKey) {
    const sel = focusClose ? `.close-conv[data-close="${CSS.escape(focusKey)}"]` : `.item[data-key="${CSS.escape(focusKey)}"]`;
    const again = document.querySelector(sel);
    if (again) again.focus();
  }
}

/** Draws the pane; keepScroll: the open conversation changed in place (history merged). */
function renderPane(keepScroll = false) {
  const key = store ? store.current : null;
  const conv = key ? store.get(key) : null;
  $('empty').hidden = !!conv;
  $('messages').hidden = !conv;
  $('messages').setAttribute('aria-label', conv ? `Messages in ${key}` : 'Messages');
  if (!conv) {
    const gone = store && store.lastGone;
    $('empty-title').textContent = gone || 'Pick a conversation';
    $('empty-text').textContent = gone
      ? 'Pick another conversation on the left.'
      : 'Open a channel on the left, create one with +, or message someone directly. Ctrl+K jumps to any conversation.';
    if (store) store.lastGone = '';
    $('app').dataset.view = gone ? $('app').dataset.view : 'list';
    $('title').textContent = 'chat';
    $('subtitle').textContent = '';
    $('messages').replaceChildren();
    rendered = { key: null, last: null };
  } else if (rendered.key !== key) {
    rendered = { key, last: null };
    $('input').value = drafts.get(key) || '';
    autosize();
    drawMessages(true);
  } else if (keepScroll) {
    drawMessages(false);
  } else {
    appendMessages();
  }
  renderPaneHead();
  renderSendError();
  renderComposerState();
  renderMembers();
  renderTyping();
}

/**
 * The open channel's members, with a dot for who is online (spec 6), kept
 * live by join, left, online and offline events; its button says how many.
 */
function renderMembers() {
  const key = store ? store.current : null;
  const conv = key ? store.get(key) : null;
  const isChannel = !!conv && conv.kind === 'channel';
  const toggle = $('members-toggle');
  toggle.hidden = !isChannel;
  toggle.setAttribute('aria-expanded', String(isChannel && membersOpen));
  const shown = isChannel && membersOpen;
  $('members').hidden = !shown;
  $('app').dataset.members = shown ? 'open' : 'closed';
  const list = isChannel && conv.members ? [...conv.members.values()].sort((a, b) => (a.username < b.username ? -1 : 1)) : [];
  $('members-count').textContent = isChannel && conv.members ? String(list.length) : '';
  if (!shown) return;
  $('members').setAttribute('aria-label', `Members of ${key}`);
  $('members-summary').textContent = conv.members ? `${list.filter((m) => m.online).length} of ${list.length} online` : 'Loading…';
  $('member-list').replaceChildren(
    ...list.map((m) =>
      el(
        'li',
        { 'data-user': m.username, 'data-online': String(m.online) },
        el('span', { class: 'presence', 'data-online': String(m.online), title: m.online ? 'online' : 'offline' }),
        el('span', { class: 'name' }, m.username),
        el('span', { class: 'sr-only' }, m.online ? ' (online)' : ' (offline)'),
      ),
    ),
  );
}

/** "alice is typing…" under the message box, for TYPING_SHOWN after each typing event. */
function renderTyping() {
  clearTimeout(typingTimer);
  const key = store ? store.current : null;
  const names = key ? store.typingNow(key) : [];
  let words = '';
  if (names.length === 1) words = `${names[0]} is typing…`;
  else if (names.length === 2) words = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) words = 'Several people are typing…';
  $('typing').textContent = words;
  if (names.length > 0) typingTimer = setTimeout(renderTyping, Math.min(1000, TYPING_SHOWN));
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

/**
 * Draws the open conversation's messages anew: at the bottom (jump), or
 * keeping what the reader looks at where it is (a page of history came in
 * above it), or at the bottom if that is where the reader was.
 */
function drawMessages(jump) {
  const conv = store.get(store.current);
  if (!conv) return;
  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const frag = document.createDocumentFragment();
  frag.append(edgeNode(conv));
  for (let i = 0; i < conv.items.length; i++) frag.append(...itemNode(conv.items, i));
  // The log is redrawn, not added to: screen readers are told to wait.
  box.setAttribute('aria-busy', 'true');
  box.replaceChildren(frag);
  box.removeAttribute('aria-busy');
  rendered.last = conv.items.length > 0 ? conv.items[conv.items.length - 1] : null;
  box.scrollTop = jump || nearBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
}

/** Appends the open conversation's items that are not on the page yet. */
function appendMessages() {
  const conv = store.get(store.current);
  if (!conv) return;
  const box = $('messages');
  const from = rendered.last ? conv.items.lastIndexOf(rendered.last) + 1 : 0;
  if (from === 0) {
    // Nothing drawn yet, or what was drawn is gone from the store: all anew.
    drawMessages(false);
    return;
  }
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const frag = document.createDocumentFragment();
  let mine = false;
  for (let i = from; i < conv.items.length; i++) {
    frag.append(...itemNode(conv.items, i));
    mine = mine || conv.items[i].mine;
  }
  rendered.last = conv.items[conv.items.length - 1];
  box.append(frag);
  renderEdge();
  if (nearBottom || mine) box.scrollTop = box.scrollHeight;
}

/**
 * The top of the message list: loading, a button for older messages (also
 * loaded by scrolling to the top), the beginning of the conversation, or
 * the intro of an empty one.
 */
function edgeNode(conv) {
  const edge = (cls, ...children) => el('div', { id: 'history-edge', class: cls }, ...children);
  if (conv.loading) return edge('edge', conv.loaded ? 'Loading older messages…' : 'Loading messages…');
  if (conv.more) return edge('edge', el('button', { type: 'button', class: 'btn small ghost', onclick: () => loadHistory(conv.key, true) }, 'Load older messages'));
  if (conv.items.length === 0) return edge('intro', introText(conv));
  if (conv.loaded) return edge('edge', conv.kind === 'direct' ? `This is the beginning of your conversation with ${conv.key.slice(1)}.` : `This is the beginning of ${conv.key}.`);
  return edge('edge', '');
}

function renderEdge() {
  const conv = store && store.get(store.current);
  const old = document.getElementById('history-edge');
  if (!conv || !old) return;
  old.replaceWith(edgeNode(conv));
}

function introText(conv) {
  if (conv.kind === 'direct') return `This is your private conversation with ${conv.key.slice(1)}. Only the two of you see it.`;
  if (!conv.joined) return `Messages in ${conv.key} show here once you have joined.`;
  if (conv.loaded) return `Nothing has been said in ${conv.key} yet.`;
  return `Messages in ${conv.key} show here.`;
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

/** Closes both side forms (and their errors), e.g. when the open conversation changes. */
function closeForms() {
  for (const which of ['create', 'dm']) {
    if (!$(`${which}-form`).hidden) toggleForm(which, false);
  }
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

// ---------------------------------------------------------------- the quick switcher

let switcherChoices = []; // keys listed, in order
let switcherIndex = 0;
let switcherReturn = null; // where the focus goes back to when nothing is chosen

function openSwitcher() {
  const dlg = $('switcher');
  if (!store || dlg.open) return;
  switcherReturn = document.activeElement;
  $('switcher-input').value = '';
  renderSwitcher();
  dlg.showModal();
  $('switcher-input').focus();
}

/** Lists the conversations whose name holds what was typed: names that start with it first. */
function renderSwitcher() {
  const q = $('switcher-input').value.trim().toLowerCase();
  const sigil = q[0] === '#' || q[0] === '@' ? q[0] : '';
  const word = sigil ? q.slice(1) : q;
  const all = store.ordered().filter((c) => (!sigil || c.key[0] === sigil) && c.key.slice(1).includes(word));
  const starts = all.filter((c) => c.key.slice(1).startsWith(word));
  const rest = all.filter((c) => !c.key.slice(1).startsWith(word));
  switcherChoices = [...starts, ...rest].map((c) => c.key);
  switcherIndex = 0;
  const list = $('switcher-list');
  list.replaceChildren(
    ...[...starts, ...rest].map((c, i) =>
      el(
        'li',
        { id: `switcher-${i}`, role: 'option', 'data-key': c.key, 'aria-selected': 'false', onclick: () => chooseSwitcher(c.key) },
        el('span', { class: 'name' }, c.key),
        c.unread > 0 ? el('span', { class: c.alert ? 'badge alert' : 'badge' }, `${c.unread} unread`) : null,
        c.kind === 'channel' && !c.joined ? el('span', { class: 'hint' }, 'not joined') : null,
      ),
    ),
  );
  if (switcherChoices.length === 0) list.append(el('li', { class: 'hint', role: 'option', 'aria-disabled': 'true' }, 'No conversation has that name.'));
  markSwitcher();
}

function markSwitcher() {
  const input = $('switcher-input');
  let active = null;
  for (const li of $('switcher-list').children) {
    const on = li.id === `switcher-${switcherIndex}`;
    li.setAttribute('aria-selected', String(on && li.dataset.key !== undefined));
    if (on && li.dataset.key) active = li;
  }
  if (active) {
    input.setAttribute('aria-activedescendant', active.id);
    active.scrollIntoView({ block: 'nearest' });
  } else {
    input.removeAttribute('aria-activedescendant');
  }
}

function chooseSwitcher(key) {
  switcherReturn = null;
  $('switcher').close();
  openAndFocus(key);
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
      if (e.key === 'Escape') {
        toggleForm(which, false);
        $(which === 'create' ? 'new-channel' : 'new-dm').focus();
      }
    });
  }
  $('join-cta-btn').addEventListener('click', () => join(store.current));
  $('leave').addEventListener('click', () => leave(store.current));
  $('destroy').addEventListener('click', () => destroy(store.current));
  // On a phone, going back to the list closes the conversation, so that what
  // arrives in it counts as unread.
  $('back').addEventListener('click', () => open(null));
  $('logout').addEventListener('click', logout);
  $('notify').addEventListener('click', toggleNotifications);
  $('banner-retry').addEventListener('click', () => conn && conn.retryNow());
  // Scrollback: near the top of the list, the page before the oldest
  // message held loads (and keeps the reader's place).
  // Back at the end of the list, what is there has been read.
  $('messages').addEventListener('scroll', () => {
    if (store && store.current && $('messages').scrollTop < NEAR_TOP) loadHistory(store.current, true);
    readOnScreen();
  }, { passive: true });
  $('members-toggle').addEventListener('click', () => {
    membersOpen = !membersOpen;
    renderMembers();
  });
  $('members-close').addEventListener('click', () => {
    membersOpen = false;
    renderMembers();
    $('members-toggle').focus();
  });
  window.addEventListener('online', () => conn && conn.retryNow());
  // Markers read a moment ago go before the page does (a reload, a close).
  window.addEventListener('pagehide', flushReads);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && store && store.current) {
      notifier.seen(store.current);
      readOnScreen();
    }
  });

  const input = $('input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener('input', () => {
    autosize();
    typing();
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

  const sw = $('switcher-input');
  sw.addEventListener('input', renderSwitcher);
  sw.addEventListener('keydown', (e) => {
    const n = switcherChoices.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      if (n > 0) switcherIndex = (switcherIndex + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      markSwitcher();
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (n > 0) chooseSwitcher(switcherChoices[switcherIndex]);
    }
  });
  // Escape closes the dialog (the browser does that for a modal dialog);
  // the focus goes back to where it was.
  $('switcher').addEventListener('close', () => {
    if (switcherReturn && switcherReturn.isConnected) switcherReturn.focus();
    switcherReturn = null;
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  $('switcher').addEventListener('click', (e) => {
    if (e.target === $('switcher')) $('switcher').close();
  });
}

/**
 * Keys that work anywhere in the chat: Ctrl+K (⌘K) opens the quick
 * switcher, Alt+↑ and Alt+↓ move to the previous and next conversation in
 * the sidebar's order.
 */
function bindKeys() {
  document.addEventListener('keydown', (e) => {
    if (!store || $('app').hidden || $('confirm').open) return;
    if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && (e.key === 'k' || e.key === 'K')) {
      e.preventDefault();
      openSwitcher();
    } else if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && !$('switcher').open) {
      e.preventDefault();
      step(e.key === 'ArrowDown' ? 1 : -1);
    }
  });
}

/** Opens the conversation delta places away from the open one in the sidebar (wrapping round). */
function step(delta) {
  const keys = store.ordered().map((c) => c.key);
  if (keys.length === 0) return;
  const i = keys.indexOf(store.current);
  const next = i < 0 ? (delta > 0 ? 0 : keys.length - 1) : (i + delta + keys.length) % keys.length;
  openAndFocus(keys[next]);
}
