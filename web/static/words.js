// Name rules (spec 2 and 3.2) checked before a request is sent, and the
// server's error codes (spec 3.4) put in plain words for the person.

const CHANNEL = /^#[A-Za-z0-9_-]{1,64}$/;
const USERNAME = /^[a-z0-9_-]{1,39}$/;

/** The channel name for what the person typed ("lobby" or "#Lobby" → "#lobby"), or null. */
export function channelName(input) {
  let s = String(input).trim();
  if (!s.startsWith('#')) s = '#' + s;
  return CHANNEL.test(s) ? s.toLowerCase() : null;
}

/** The username for what the person typed ("@Bob" or "bob" → "bob"), or null. */
export function username(input) {
  let s = String(input).trim().toLowerCase();
  if (s.startsWith('@')) s = s.slice(1);
  return USERNAME.test(s) ? s : null;
}

export const CHANNEL_RULE = 'A channel name is # followed by 1 to 64 letters, digits, _ or -.';
export const USERNAME_RULE = 'A username is 1 to 39 characters: a–z, 0–9, _ or -.';

/** The byte length of s in UTF-8. */
export function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

/** Whether a message is only white space (Unicode White_Space). */
export function blank(s) {
  return /^[\s\u0085]*$/u.test(s);
}

/**
 * What went wrong, in words, for an error {code, message} answering the
 * request {type, action, target}.
 */
export function explain(err, req = {}) {
  const t = req.target || '';
  const isUser = t.startsWith('@');
  switch (err.code) {
    case 'rate_limited':
      return 'You are sending too fast. Wait a moment, then try again.';
    case 'invalid_target':
      return isUser ? `${t} is not a valid username. ${USERNAME_RULE}` : `${t} is not a valid channel name. ${CHANNEL_RULE}`;
    case 'invalid_message':
      return 'That message can’t be sent: it is empty or too long.';
    case 'not_found':
      return isUser ? `There is nobody called ${t}.` : `${t} does not exist (any more).`;
    case 'already_exists':
      return `${t} already exists. You can join it instead.`;
    case 'forbidden':
      return `Only the owner of ${t} can destroy it.`;
    case 'not_member':
      return req.type === 'message' ? `You are not in ${t}: join it to write there.` : `You are not in ${t}.`;
    case 'unavailable':
      return 'The server can’t reach its storage right now, so nothing happened. Try again in a moment.';
    case 'internal':
      return 'Something went wrong on the server, so nothing happened. Try again.';
    case 'disconnected':
      return 'The connection dropped before the server answered. Check whether it happened, and try again if not.';
    case 'offline':
      return 'You are offline right now. Try again once the connection is back.';
    case 'bad_request':
      return `The server did not understand that request (${err.message || 'bad request'}).`;
    default:
      return err.message || `Error: ${err.code}`;
  }
}

/** Words for a websocket close code that ends the session or needs the person. */
export function closeWords(code, reason) {
  const why = reason ? ` (${reason})` : '';
  switch (code) {
    case 1008:
      return `The server closed the connection: this tab fell behind with incoming messages, or the session expired${why}.`;
    case 1003:
    case 1007:
    case 1009:
      return `The server refused something this tab sent (close code ${code})${why}.`;
    case 1011:
      return `The server hit an unexpected error${why}.`;
    default:
      return `The connection closed (code ${code})${why}.`;
  }
}
