// The HTTP side of signing in (spec 2). The session lives in the HttpOnly
// chat_session cookie, which the websocket to the same origin then carries.

/** The configured providers: [{name, login_url}]. */
export async function providers() {
  const r = await fetch('/auth/providers', { headers: { Accept: 'application/json' } });
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  const body = await r.json();
  return Array.isArray(body.providers) ? body.providers : [];
}

/**
 * Whether the browser holds a session cookie at all, which the page can't
 * see itself (the cookie is HttpOnly). Without one, GET /auth/me would only
 * answer 401, which the browser logs as an error in its console; this asks
 * the page's own server instead (web.SessionHintPath), which always answers
 * 200. When the hint can't be had, the answer is "maybe".
 */
export async function maybeSignedIn() {
  try {
    const r = await fetch('/session-hint', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) return true;
    return (await r.json()).cookie !== false;
  } catch {
    return true;
  }
}

/** The signed-in user {identifier, username, provider}, or null without a session. */
export async function me() {
  const r = await fetch('/auth/me', { headers: { Accept: 'application/json' } });
  if (r.status === 401) return null;
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  return r.json();
}

/** Dev login (only when the server has it on). Throws an Error with words for the person. */
export async function devLogin(username) {
  const r = await fetch('/auth/dev/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username }),
  });
  if (r.ok) return r.json();
  const text = (await r.text()).trim();
  if (r.status === 400) throw new Error(`That name can’t be used${text ? `: ${text}` : '.'}`);
  if (r.status === 404) throw new Error('Dev login is switched off on this server.');
  throw new Error(`Signing in failed (the server answered ${r.status}${text ? `: ${text}` : ''}).`);
}

export async function logout() {
  const r = await fetch('/auth/logout', { method: 'POST' });
  if (!r.ok && r.status !== 401) throw new Error(`the server answered ${r.status}`);
}
