// Dashboard sessions: the login form exchanges the admin token for a session cookie, so the browser never keeps the
// token itself. A session is a random id (only its SHA-256 digest is held, in memory, at most `maxSessions`, each
// for a bounded lifetime) bound to a CSRF token the page sends as `x-csrf-token` on every state-changing call.
// Every state-changing request is also refused when the browser says it comes from another site and when it lacks
// the JSON content type (src/admin/request-origin.ts, request-body.ts, for the whole admin API), so a forged form
// post fails on several independent checks besides SameSite=Strict.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthResult } from '../auth.js';
import { HttpError } from '../http-errors.js';
import type { Clock } from '../../ports.js';

export const SESSION_COOKIE = 'keypool_session';
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/** A cookie header longer than this is not ours (bounds the parsing work per request). */
const MAX_COOKIE_HEADER_CHARS = 8192;

export interface UiSessionOptions {
  readonly clock: Clock;
  /** How long a session lasts from login (no sliding renewal: log in again after it). Default 8 h. */
  readonly ttlMs?: number;
  /** Sessions held at once; a login past it ends the oldest session. Default 100. */
  readonly maxSessions?: number;
}

export interface UiSession {
  readonly actor: string;
  readonly csrfToken: string;
  readonly expiresAtMs: number;
}

/** What the session layer reads of a request (a node IncomingMessage adapts to it in one line). */
export interface SessionRequest {
  readonly method: string;
  /** Lower-case header name -> first value. */
  header(name: string): string | undefined;
  /** The request arrived over TLS (the cookie then carries Secure). */
  readonly secure: boolean;
}

export class UiSessions {
  /** SHA-256(session id) hex -> session; Map order is creation order, so the first entry is the oldest. */
  private readonly sessions = new Map<string, UiSession>();
  private readonly ttlMs: number;
  private readonly maxSessions: number;

  constructor(private readonly options: UiSessionOptions) {
    this.ttlMs = options.ttlMs ?? 8 * 3_600_000;
    this.maxSessions = options.maxSessions ?? 100;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Starts a session for an authenticated actor; returns it with the Set-Cookie value to send. */
  create(actor: string, secure: boolean): { session: UiSession; setCookie: string } {
    const nowMs = this.options.clock.nowMs();
    this.sweep(nowMs);
    while (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    const session: UiSession = { actor, csrfToken: randomBytes(32).toString('base64url'), expiresAtMs: nowMs + this.ttlMs };
    this.sessions.set(digest(id), session);
    return { session, setCookie: sessionCookie(id, Math.floor(this.ttlMs / 1000), secure) };
  }

  /** The live session the request's cookie names; null without a cookie or when it is unknown or expired. */
  find(request: SessionRequest): UiSession | null {
    const id = cookieValue(request.header('cookie'), SESSION_COOKIE);
    if (id === undefined) return null;
    const key = digest(id);
    const session = this.sessions.get(key);
    if (session === undefined) return null;
    if (session.expiresAtMs <= this.options.clock.nowMs()) {
      this.sessions.delete(key);
      return null;
    }
    return session;
  }

  /** Ends the request's session (logout); returns the Set-Cookie value that clears the cookie. */
  destroy(request: SessionRequest): string {
    const id = cookieValue(request.header('cookie'), SESSION_COOKIE);
    if (id !== undefined) this.sessions.delete(digest(id));
    return sessionCookie('', 0, request.secure);
  }

  /**
   * Authenticates a request by its session cookie. null when it carries no session cookie (the caller then asks
   * for the bearer token); otherwise the actor, or why the request is refused.
   */
  authenticate(request: SessionRequest): AuthResult | null {
    if (cookieValue(request.header('cookie'), SESSION_COOKIE) === undefined) return null;
    const session = this.find(request);
    if (session === null) return { ok: false, error: new HttpError(401, 'session_expired', 'the dashboard session has ended; log in again') };
    const refusal = refuseUnsafe(request, session);
    return refusal === null ? { ok: true, actor: session.actor } : { ok: false, error: refusal };
  }

  private sweep(nowMs: number): void {
    for (const [key, session] of this.sessions) if (session.expiresAtMs <= nowMs) this.sessions.delete(key);
  }
}

/** Why a cookie-authenticated request must not change anything (no or a wrong CSRF token), or null when it may. */
function refuseUnsafe(request: SessionRequest, session: UiSession): HttpError | null {
  if (SAFE_METHODS.has(request.method)) return null;
  const presented = request.header(CSRF_HEADER);
  if (presented === undefined || !sameSecret(presented, session.csrfToken)) {
    return new HttpError(403, 'csrf_failed', `state-changing dashboard calls need the session's CSRF token in ${CSRF_HEADER}`);
  }
  return null;
}

function sessionCookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  const parts = [`${SESSION_COOKIE}=${value}`, 'Path=/', `Max-Age=${maxAgeSeconds}`, 'HttpOnly', 'SameSite=Strict'];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}

/** The value of cookie `name` in a Cookie header; undefined when absent or malformed. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length > MAX_COOKIE_HEADER_CHARS) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    const value = pair.slice(eq + 1).trim();
    return /^[A-Za-z0-9_-]{1,128}$/.test(value) ? value : undefined;
  }
  return undefined;
}

function sameSecret(presented: string, expected: string): boolean {
  return presented.length <= 256 && timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(expected).digest());
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}
