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

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });

/** A <time> in the reader's local time, the full date on hover. */
export function timeEl(d, iso) {
  return el('time', { datetime: iso || d.toISOString(), title: fullFmt.format(d) }, timeFmt.format(d));
}

/** One sidebar entry. */
export function listItem(conv, current, onOpen) {
  const isChannel = conv.kind === 'channel';
  const label = conv.key.slice(1);
  const marks = [];
  if (conv.unread > 0) {
    marks.push(el('span', { class: 'badge', 'aria-label': `${conv.unread} unread` }, conv.unread > 99 ? '99+' : String(conv.unread)));
  } else if (isChannel && !conv.joined) {
    marks.push(el('span', { class: 'tag' }, 'join'));
  }
  if (isChannel && conv.owned) marks.push(el('span', { class: 'owner', title: 'You own this channel' }, '★'));
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
    ...marks,
  );
  return el('li', {}, btn);
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
  const body = el('div', { class: 'text' }, it.text);
  if (continues) {
    nodes.push(
      el('div', { class: 'msg cont' + (it.mine ? ' mine' : ''), 'data-user': it.username }, el('span', { class: 'gutter' }, timeEl(it.ts, it.tsText)), el('div', { class: 'body' }, body)),
    );
  } else {
    nodes.push(
      el(
        'div',
        { class: 'msg' + (it.mine ? ' mine' : ''), 'data-user': it.username },
        avatar(it.username),
        el('div', { class: 'body' }, el('div', { class: 'meta' }, el('span', { class: 'author' }, it.username), timeEl(it.ts, it.tsText)), body),
      ),
    );
  }
  return nodes;
}
