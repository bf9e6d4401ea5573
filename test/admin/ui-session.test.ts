// The dashboard's session and CSRF rules, at the HTTP level against a real admin server (token-protected listener):
// login exchanges the token for an HttpOnly SameSite=Strict cookie, the cookie authorises reads, writes also need
// the session's CSRF token and a same-origin request, sessions end (logout, lifetime), and the page is served with
// a strict Content-Security-Policy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UiSessions, cookieValue, SESSION_COOKIE } from '../../src/admin/ui/session.js';
import { ManualClock, startHarness, TOKEN, TOKEN_NAME, type ApiOptions, type Harness } from './harness.js';

describe('dashboard sessions and CSRF', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  async function login(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
    const res = await h.api('POST', '/ui/session', { token: null, body: { token: TOKEN } });
    expect(res.status).toBe(201);
    const setCookie = res.headers.get('set-cookie') ?? '';
    const id = cookieValue(setCookie.split(';')[0], SESSION_COOKIE);
    expect(id).toBeDefined();
    return { cookie: `${SESSION_COOKIE}=${id}`, csrf: res.json.csrf_token as string, setCookie };
  }

  const withSession = (s: { cookie: string; csrf?: string }, extra: Record<string, string> = {}, body?: unknown): ApiOptions => ({
    token: null,
    body,
    headers: { cookie: s.cookie, 'content-type': 'application/json', ...(s.csrf === undefined ? {} : { 'x-csrf-token': s.csrf }), ...extra },
  });

  it('serves the page with a strict CSP and no caching, and the hashed bundles cached for a year', async () => {
    const page = await h.api('GET', '/ui', { token: null });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const script = /src="(\/ui\/assets\/app-[A-Z0-9]+\.js)"/.exec(page.text)?.[1];
    expect(script).toBeDefined();
    const bundle = await h.api('GET', script!, { token: null });
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(bundle.headers.get('cache-control')).toContain('immutable');
    const again = await h.api('GET', script!, { token: null, headers: { 'if-none-match': bundle.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await h.api('GET', '/ui/assets/nope.js', { token: null })).status).toBe(404);
    const slash = await fetch(`${h.baseUrl}/ui/`, { redirect: 'manual' });
    expect(slash.status).toBe(308);
    expect(slash.headers.get('location')).toBe('/ui');
    // Nothing the page loads comes from elsewhere.
    expect(page.text).not.toMatch(/https?:\/\//);
  });

  it('refuses a wrong token at login and sets no cookie', async () => {
    const res = await h.api('POST', '/ui/session', { token: null, body: { token: 'wrong-token' } });
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('invalid_token');
    expect(res.headers.get('set-cookie')).toBeNull();
    const me = await h.api('GET', '/ui/session', { token: null });
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ authenticated: false, csrf_token: null });
  });

  it('logs in with the token: an HttpOnly SameSite=Strict cookie with a bounded lifetime, never the token', async () => {
    const { setCookie, csrf, cookie } = await login();
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Max-Age=28800/);
    expect(setCookie).toMatch(/Path=\//);
    expect(setCookie).not.toMatch(/Secure/); // plain-HTTP listener; Secure is added under TLS
    expect(setCookie).not.toContain(TOKEN);
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    const me = await h.api('GET', '/ui/session', withSession({ cookie }));
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ authenticated: true, auth_required: true, actor: TOKEN_NAME, csrf_token: csrf });
    expect(me.text).not.toContain(TOKEN);
    expect(h.logs.join('\n')).not.toContain(TOKEN);
  });

  it('authorises reads with the cookie alone; no cookie and no token is 401', async () => {
    const session = await login();
    expect((await h.api('GET', '/admin/providers', withSession({ cookie: session.cookie }))).status).toBe(200);
    expect((await h.api('GET', '/admin/providers', { token: null })).status).toBe(401);
  });

  it('accepts a write with the session CSRF token and refuses it without, with a wrong one, or cross-site', async () => {
    const session = await login();
    const created = await h.api('POST', '/admin/keys', withSession(session, {}, { name: 'ui-csrf-ok' }));
    expect(created.status).toBe(201);

    const missing = await h.api('POST', '/admin/keys', withSession({ cookie: session.cookie }, {}, { name: 'ui-csrf-missing' }));
    expect(missing.status).toBe(403);
    expect(missing.json.error.code).toBe('csrf_failed');

    const wrong = await h.api('POST', '/admin/keys', withSession({ cookie: session.cookie, csrf: 'x'.repeat(43) }, {}, { name: 'ui-csrf-wrong' }));
    expect(wrong.status).toBe(403);
    expect(wrong.json.error.code).toBe('csrf_failed');

    // A form posted from another site: the browser says so (and SameSite=Strict would not even send the cookie).
    const crossSite = await h.api('POST', '/admin/keys', withSession(session, { 'sec-fetch-site': 'cross-site' }, { name: 'ui-csrf-xsite' }));
    expect(crossSite.status).toBe(403);
    expect(crossSite.json.error.code).toBe('cross_site_request');
    const otherOrigin = await h.api('POST', '/admin/keys', withSession(session, { origin: 'https://evil.example' }, { name: 'ui-csrf-origin' }));
    expect(otherOrigin.status).toBe(403);
    expect(otherOrigin.json.error.code).toBe('cross_site_request');
    const sameOrigin = await h.api('POST', '/admin/keys', withSession(session, { origin: h.baseUrl, 'sec-fetch-site': 'same-origin' }, { name: 'ui-csrf-same' }));
    expect(sameOrigin.status).toBe(201);

    // None of the refused writes happened.
    const names = ((await h.api('GET', '/admin/keys')).json.items as Array<{ name: string }>).map((k) => k.name);
    expect(names).toEqual(expect.arrayContaining(['ui-csrf-ok', 'ui-csrf-same']));
    expect(names.filter((n) => /missing|wrong|xsite|origin/.test(n))).toEqual([]);
  });

  it('refuses a cross-site login post', async () => {
    const res = await h.api('POST', '/ui/session', { token: null, body: { token: TOKEN }, headers: { 'sec-fetch-site': 'cross-site' } });
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
  });

  it('refuses an expired session', async () => {
    const session = await login();
    h.clock.advance(8 * 3_600_000 + 1_000);
    const res = await h.api('GET', '/admin/providers', withSession(session));
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('session_expired');
    const write = await h.api('POST', '/admin/keys', withSession(session, {}, { name: 'ui-expired' }));
    expect(write.status).toBe(401);
  });

  it('ends the session at logout (with its CSRF token)', async () => {
    const session = await login();
    const forged = await h.api('DELETE', '/ui/session', withSession({ cookie: session.cookie }));
    expect(forged.status).toBe(403);
    const out = await h.api('DELETE', '/ui/session', withSession(session));
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(new RegExp(`^${SESSION_COOKIE}=;.*Max-Age=0`));
    expect((await h.api('GET', '/admin/providers', withSession(session))).status).toBe(401);
  });

  it('a bearer token still works beside sessions (API clients are unaffected)', async () => {
    expect((await h.api('GET', '/admin/providers')).status).toBe(200);
    expect((await h.api('POST', '/admin/keys', { body: { name: 'ui-bearer' } })).status).toBe(201);
  });
});

describe('UiSessions bounds', () => {
  const request = (cookie: string | undefined, method = 'GET') => ({
    method,
    secure: false,
    header: (name: string) => (name === 'cookie' ? cookie : undefined),
  });
  const cookieOf = (setCookie: string) => setCookie.split(';')[0]!;

  it('holds at most maxSessions: a login past it ends the oldest session', () => {
    const sessions = new UiSessions({ clock: new ManualClock(0), maxSessions: 3 });
    const cookies = Array.from({ length: 4 }, () => cookieOf(sessions.create('admin', false).setCookie));
    expect(sessions.size).toBe(3);
    expect(sessions.find(request(cookies[0]))).toBeNull();
    for (const cookie of cookies.slice(1)) expect(sessions.find(request(cookie))).not.toBeNull();
  });

  it('forgets expired sessions and marks the cookie Secure under TLS', () => {
    const clock = new ManualClock(0);
    const sessions = new UiSessions({ clock, ttlMs: 1_000 });
    const { setCookie } = sessions.create('admin', true);
    expect(setCookie).toMatch(/; Secure$/);
    expect(sessions.authenticate(request(cookieOf(setCookie)))).toEqual({ ok: true, actor: 'admin' });
    clock.advance(1_000);
    const result = sessions.authenticate(request(cookieOf(setCookie)));
    expect(result?.ok).toBe(false);
    expect(sessions.size).toBe(0);
    expect(sessions.authenticate(request(undefined))).toBeNull();
  });
});
