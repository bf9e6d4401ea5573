// The dashboard's own routes under /ui: the page, its bundles, and the session (login, who am I, logout). They are
// not part of the admin API (openapi.yaml): the page reads and writes through the admin API like any client, with
// its session cookie and CSRF token instead of the bearer token.
import type { TokenAuth } from '../auth.js';
import { badRequest, HttpError } from '../http-errors.js';
import type { Reply, RequestContext, RouteDef } from '../router.js';
import { UI_SECURITY_HEADERS, type UiAsset, type UiAssets } from './assets.js';
import type { SessionRequest, UiSessions } from './session.js';

export interface UiRouteDeps {
  readonly assets: UiAssets;
  readonly sessions: UiSessions;
  readonly auth: TokenAuth;
  /** Actor of an open (loopback, token-less) listener. */
  readonly openActor: string;
}

/** Hashed bundle names change with their content: cache them for a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';
const MAX_TOKEN_CHARS = 1024;

export function uiRoutes(deps: UiRouteDeps): RouteDef[] {
  return [
    { method: 'GET', path: '/ui', access: 'public', handler: async (ctx) => page(deps, ctx) },
    // A typed trailing slash would otherwise be a 404.
    { method: 'GET', path: '/ui/', access: 'public', handler: async () => ({ status: 308, headers: { location: '/ui' } }) },
    { method: 'GET', path: '/ui/assets/:file', access: 'public', handler: async (ctx) => bundle(deps, ctx) },
    {
      method: 'GET',
      path: '/ui/session',
      access: 'public',
      handler: async (ctx) => {
        // "Not logged in" is an answer here, not a failure: the page asks this first and shows the login form.
        if (!deps.auth.enabled) {
          return sessionReply(200, { authenticated: true, auth_required: false, actor: deps.openActor, csrf_token: null, expires_at: null });
        }
        const session = deps.sessions.find(sessionRequest(ctx));
        if (session === null) return sessionReply(200, { authenticated: false, auth_required: true, actor: null, csrf_token: null, expires_at: null });
        return sessionReply(200, {
          authenticated: true,
          auth_required: true,
          actor: session.actor,
          csrf_token: session.csrfToken,
          expires_at: new Date(session.expiresAtMs).toISOString(),
        });
      },
    },
    {
      method: 'POST',
      path: '/ui/session',
      access: 'public',
      // Login: the token is checked exactly as a bearer token would be; it is never stored or logged. A cross-site
      // login post is refused before this runs, like every cross-site write (request-origin.ts).
      handler: async (ctx) => {
        const request = sessionRequest(ctx);
        if (!deps.auth.enabled) throw new HttpError(409, 'auth_disabled', 'this listener needs no login (loopback without KEYPOOL_ADMIN_TOKEN)');
        const token = tokenOf(ctx.body);
        const result = deps.auth.authenticate(`Bearer ${token}`);
        if (!result.ok) throw new HttpError(401, 'invalid_token', 'the admin token is not valid');
        const { session, setCookie } = deps.sessions.create(result.actor, request.secure);
        return sessionReply(
          201,
          { authenticated: true, auth_required: true, actor: session.actor, csrf_token: session.csrfToken, expires_at: new Date(session.expiresAtMs).toISOString() },
          { 'set-cookie': setCookie },
        );
      },
    },
    {
      method: 'DELETE',
      path: '/ui/session',
      access: 'public',
      // Logout needs the session's CSRF token like any write (a forged logout is a nuisance, not a breach, but cheap to refuse).
      handler: async (ctx) => {
        const request = sessionRequest(ctx);
        const result = deps.sessions.authenticate(request);
        if (result !== null && !result.ok && result.error.status === 403) throw result.error;
        return { status: 204, headers: { 'set-cookie': deps.sessions.destroy(request) } };
      },
    },
  ];
}

function page(deps: UiRouteDeps, ctx: RequestContext): Reply {
  const index = deps.assets.index();
  if (index === null) throw new HttpError(503, 'dashboard_not_built', 'the dashboard assets are missing: run `npm run build`');
  return served(index, ctx, 'no-cache');
}

function bundle(deps: UiRouteDeps, ctx: RequestContext): Reply {
  const file = deps.assets.file(ctx.params.file!);
  if (file === undefined) throw new HttpError(404, 'asset_not_found', 'no such dashboard file');
  return served(file, ctx, IMMUTABLE);
}

function served(asset: UiAsset, ctx: RequestContext, cacheControl: string): Reply {
  const headers = { ...UI_SECURITY_HEADERS, 'cache-control': cacheControl, etag: asset.etag };
  if (ctx.header('if-none-match') === asset.etag) return { status: 304, headers };
  return { status: 200, text: { contentType: asset.contentType, content: asset.content }, headers };
}

function sessionReply(status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): Reply {
  return { status, body, headers: { ...headers, 'cache-control': 'no-store' } };
}

function tokenOf(body: unknown): string {
  const token = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as { token?: unknown }).token : undefined;
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS || /\s/.test(token)) {
    throw badRequest('invalid_body', 'expected {"token": "<KEYPOOL_ADMIN_TOKEN>"}', 'token');
  }
  return token;
}

function sessionRequest(ctx: RequestContext): SessionRequest {
  return { method: ctx.method, header: ctx.header, secure: ctx.secure };
}
