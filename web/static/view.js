// Rendering. Every piece of text from the server or the person goes into the
// page as a text node (textContent), never as HTML.

/** Creates an element: props are set as attributes (dataset for data-*), children as nodes or text. */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

/** A stable colour for a name. */
export function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

export function avatar(name, cls = 'avatar') {
  const a = el('span', { class: cls, 'aria-hidden': 'true' }, (name[0] || '?').toUpperCase());
  a.style.setProperty('--hue', String(hue(name)));
  return a;
}

/**
 * Formats a time of day the way the reader's locale writes it ("6:07 AM",
 * "06:07", "6:07 vorm."): the short time style, not two-digit hours.
 */
export function timeFormat(locale = undefined, timeZone = undefined) {
  return new Intl.DateTimeFormat(locale, { timeStyle: 'short', timeZone });
}

const timeFmt = timeFormat();
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });

/** A <time> in the reader's local time, the full date on hover. */
export function timeEl(d, iso) {
  return el('time', { datetime: iso || d.toISOString(), title: fullFmt.format(d) }, timeFmt.format(d));
}

/**
 * DOM nodes for formatted text (format.js): elements built one by one,
 * every piece of text a text node. Links open in a new tab without telling
 * the target where they came from.
 */
export function richText(nodes) {
  return nodes.map((n) => {
    switch (n.type) {
      case 'code':
        return el('code', {}, n.text);
      case 'pre':
        return el('pre', {}, el('code', {}, n.text));
      case 'strong':
      case 'em':
        return el(n.type, {}, ...richText(n.children));
      case 'link':
        return el('a', { href: n.href, target: '_blank', rel: 'noopener noreferrer' }, n.text);
      case 'mention':
        return el('span', { class: n.me ? 'mention you' : 'mention' }, n.text);
      default:
        return document.createTextNode(n.text);
    }
  });
}

/**
 * One sidebar entry: a button that opens the conversation and, for a
 * private conversation, a second one that closes it (onClose).
 */
export function listItem(conv, current, onOpen, onClose) {
  const isChannel = conv.kind === 'channel';
  const label = conv.key.slice(1);
  const marks = [];
  if (conv.unread > 0) {
    // The badge's number is read with its meaning: "erin 2 unread, for you".
    marks.push(
      el(
        'span',
        { class: conv.alert ? 'badge alert' : 'badge', title: conv.alert ? 'unread, for you' : 'unread' },
        conv.unread > 99 ? '99+' : String(conv.unread),
        el('span', { class: 'sr-only' }, conv.alert ? ' unread, for you' : ' unread'),
      ),
    );
  } else if (isChannel && !conv.joined) {
    marks.push(el('span', { class: 'tag' }, 'join'));
  }
  if (isChannel && conv.owned) marks.push(el('span', { class: 'owner', title: 'You own this channel' }, '★', el('span', { class: 'sr-only' }, ' yours')));
  // The accessible name is the visible text with a few words for what the
  // marks and the avatar say by their looks.
  const btn = el(
    'button',
    {
      type: 'button',
      class: 'item',
      'data-key': conv.key,
      'data-joined': isChannel ? String(conv.joined) : null,
      'data-unread': String(conv.unread),
      'aria-current': conv.key === current ? 'page' : null,
      title: isChannel ? (conv.joined ? `${conv.key} (joined)` : `${conv.key} (not joined)`) : `Private conversation with ${conv.key}`,
      onclick: () => onOpen(conv.key),
    },
    isChannel ? el('span', { class: 'sigil', 'aria-hidden': 'true' }, '#') : avatar(label, 'avatar tiny'),
    el('span', { class: 'name' }, label),
    isChannel ? null : el('span', { class: 'sr-only' }, ' (private)'),
    ...marks,
  );
  if (isChannel) return el('li', {}, btn);
  const close = el(
    'button',
    {
      type: 'button',
      class: 'close-conv',
      'data-close': conv.key,
      'aria-label': `Close the conversation with ${label}`,
      title: 'Close this conversation (a new message opens it again)',
      onclick: () => onClose(conv.key),
    },
    '×',
  );
  return el('li', { class: 'with-close' }, btn, close);
}

/**
 * The node for items[i] of a conversation: a message (with its author and
 * time unless it continues the previous author's run) or a notice.
 */
export function itemNode(items, i) {
  const it = items[i];
  const prev = i > 0 ? items[i - 1] : null;
  const nodes = [];
  if (!prev || prev.ts.toDateString() !== it.ts.toDateString()) {
    nodes.push(el('div', { class: 'day', role: 'separator' }, el('span', {}, dayFmt.format(it.ts))));
  }
  if (it.kind === 'notice') {
    nodes.push(el('div', { class: 'notice-line' }, el('span', {}, it.text), ' ', timeEl(it.ts)));
    return nodes;
  }
  const continues =
    prev && prev.kind === 'message' && prev.identifier === it.identifier && it.ts - prev.ts < 5 * 60 * 1000 && prev.ts.toDateString() === it.ts.toDateString();
  const body = el('div', { class: 'text' }, ...richText(it.nodes || [{ type: 'text', text: it.text }]));
  const cls = ['msg', continues ? 'cont' : '', it.mine ? 'mine' : '', it.mentionsMe ? 'for-me' : ''].filter(Boolean).join(' ');
  if (continues) {
    // The author is not shown again, but a screen reader still says it.
    nodes.push(
      el(
        'div',
        { class: cls, 'data-user': it.username },
        el('span', { class: 'gutter' }, timeEl(it.ts, it.tsText)),
        el('div', { class: 'body' }, el('span', { class: 'sr-only' }, `${it.username}: `), body),
      ),
    );
  } else {
    nodes.push(
      el(
        'div',
        { class: cls, 'data-user': it.username },
        avatar(it.username),
        el('div', { class: 'body' }, el('div', { class: 'meta' }, el('span', { class: 'author' }, it.username), timeEl(it.ts, it.tsText)), body),
      ),
    );
  }
  return nodes;
}
