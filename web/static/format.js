// A light, safe formatting of message text: links, mentions, `code`,
// ```code blocks```, **bold**, *italics* and _italics_. It parses text into
// a small tree of plain objects, never into HTML; view.js builds DOM nodes
// from the tree with text nodes only, so no text can become markup. No DOM
// here, so node tests it.
//
// Node types:
//   {type: 'text', text}
//   {type: 'code', text}            inline code, literal
//   {type: 'pre', text}             a code block, literal
//   {type: 'strong'|'em', children}
//   {type: 'link', href, text}      href is an absolute http(s) URL
//   {type: 'mention', name, text, me}  @name; me when it names the reader

/** How deep emphasis may nest; deeper delimiters stay text. */
const MAX_DEPTH = 4;

const URL_AT = /https?:\/\/[^\s<>"`]+/iy;
const MENTION_AT = /@([A-Za-z0-9_-]{1,39})(?![A-Za-z0-9_-])/y;
const WORD = /[\p{L}\p{N}_]/u;
const FENCE = /```([\s\S]*?)```/g;

/**
 * Parses message text; me is the reader's username, whose mentions are
 * marked. Returns a list of nodes.
 */
export function parse(text, me = '') {
  const meLower = String(me).toLowerCase();
  const out = [];
  let last = 0;
  FENCE.lastIndex = 0;
  for (let m; (m = FENCE.exec(text)); ) {
    const body = fenceBody(m[1]);
    if (body.trim() === '') continue; // ``` ``` is not a block
    out.push(...inline(text.slice(last, m.index), meLower, 0));
    out.push({ type: 'pre', text: body });
    last = FENCE.lastIndex;
  }
  out.push(...inline(text.slice(last), meLower, 0));
  return merged(out);
}

/** Whether the parsed nodes mention the reader. */
export function mentionsMe(nodes) {
  return nodes.some((n) => (n.type === 'mention' && n.me) || (n.children && mentionsMe(n.children)));
}

/** The text of the nodes with the formatting marks dropped (for notifications). */
export function plainText(nodes) {
  return nodes.map((n) => (n.children ? plainText(n.children) : n.text)).join('');
}

/** A code block's text: an optional language word on the fence's line and the newlines next to the fences go. */
function fenceBody(s) {
  const lang = /^[A-Za-z0-9_+.#-]{1,20}\n/.exec(s);
  if (lang) s = s.slice(lang[0].length);
  else if (s.startsWith('\n')) s = s.slice(1);
  if (s.endsWith('\n')) s = s.slice(0, -1);
  return s;
}

function inline(s, me, depth) {
  const out = [];
  let buf = '';
  const flush = () => {
    if (buf) out.push({ type: 'text', text: buf });
    buf = '';
  };
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '`') {
      const j = s.indexOf('`', i + 1);
      if (j > i + 1 && !s.slice(i + 1, j).includes('\n')) {
        flush();
        out.push({ type: 'code', text: s.slice(i + 1, j) });
        i = j + 1;
        continue;
      }
    } else if ((c === 'h' || c === 'H') && !wordBefore(s, i)) {
      const link = linkAt(s, i);
      if (link) {
        flush();
        out.push(link);
        i += link.text.length;
        continue;
      }
    } else if (c === '@' && !wordBefore(s, i) && s[i - 1] !== '@') {
      MENTION_AT.lastIndex = i;
      const m = MENTION_AT.exec(s);
      if (m) {
        flush();
        const name = m[1].toLowerCase();
        out.push({ type: 'mention', name, text: m[0], me: name === me });
        i += m[0].length;
        continue;
      }
    } else if ((c === '*' || c === '_') && depth < MAX_DEPTH) {
      const strong = c === '*' && s[i + 1] === '*';
      const mark = strong ? '**' : c;
      const end = closing(s, i, mark);
      if (end > 0) {
        flush();
        out.push({ type: strong ? 'strong' : 'em', children: merged(inline(s.slice(i + mark.length, end), me, depth + 1)) });
        i = end + mark.length;
        continue;
      }
      if (strong) {
        // "**" that opens nothing stays text as a pair, so that its second
        // star cannot open an italic of its own.
        buf += '**';
        i += 2;
        continue;
      }
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

/**
 * Where the emphasis opened by mark at i closes, or -1. It opens only
 * before a non-space and not inside a word (so snake_case and 2*3*4 stay
 * text), and closes after a non-space, not followed by a word character,
 * on the same line.
 */
function closing(s, i, mark) {
  const n = mark.length;
  if (wordBefore(s, i) || s[i - 1] === mark[0]) return -1;
  const first = s[i + n];
  if (first === undefined || /\s/.test(first) || first === mark[0]) return -1;
  for (let j = s.indexOf(mark, i + n + 1); j > 0; j = s.indexOf(mark, j + 1)) {
    if (s.slice(i + n, j).includes('\n')) return -1;
    const before = s[j - 1];
    const after = s[j + n];
    if (/\s/.test(before) || before === mark[0]) continue;
    if (after !== undefined && (WORD.test(after) || after === mark[0])) continue;
    return j;
  }
  return -1;
}

function wordBefore(s, i) {
  return i > 0 && WORD.test(s[i - 1]);
}

/** A link at i: an http(s) URL without the punctuation that ends the sentence around it. */
function linkAt(s, i) {
  URL_AT.lastIndex = i;
  const m = URL_AT.exec(s);
  if (!m) return null;
  let text = m[0];
  for (;;) {
    const last = text[text.length - 1];
    if ('.,;:!?\'*_'.includes(last)) text = text.slice(0, -1);
    else if (last === ')' && count(text, '(') < count(text, ')')) text = text.slice(0, -1);
    else if (last === ']' && count(text, '[') < count(text, ']')) text = text.slice(0, -1);
    else break;
  }
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) return null;
  return { type: 'link', href: url.href, text };
}

function count(s, ch) {
  let n = 0;
  for (const c of s) if (c === ch) n++;
  return n;
}

/** Joins neighbouring text nodes. */
function merged(nodes) {
  const out = [];
  for (const n of nodes) {
    const prev = out[out.length - 1];
    if (n.type === 'text' && prev && prev.type === 'text') prev.text += n.text;
    else out.push(n);
  }
  return out;
}
