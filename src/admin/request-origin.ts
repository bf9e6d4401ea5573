// Where an admin request may come from, beyond its token. The admin API is open without a token on loopback, so a
// web page the operator visits must not be able to use it:
// - DNS rebinding: a page re-points its own name at 127.0.0.1 and calls the API as same-origin; its requests carry
//   that name in Host. Only IP literals (no name can be rebound to them), `localhost` and the names the operator
//   lists (KEYPOOL_ADMIN_ALLOWED_HOSTS) are accepted as Host, on every route;
// - cross-site requests (a form POST, a fetch with mode no-cors): the browser says where they come from in Origin
//   and Sec-Fetch-Site; a state-changing request from any other site is refused. Clients that are not browsers
//   (curl, scripts) send neither header and are unaffected.
// The JSON content type every state-changing request must carry (request-body.ts) closes the rest: a cross-site
// form cannot send it, and a cross-site fetch that does needs a CORS preflight, which this API never grants.
import { isIP } from 'node:net';
import { HttpError } from './http-errors.js';

export interface OriginPolicy {
  /** Host of the listen address when it is one specific IP (`127.0.0.1`); null for a wildcard (0.0.0.0, ::). */
  readonly listenHost: string | null;
  /** Lower-case names accepted in Host besides IP literals and `localhost` (KEYPOOL_ADMIN_ALLOWED_HOSTS). */
  readonly allowedHosts: ReadonlySet<string>;
}

const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '']);
const STATE_CHANGING: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function originPolicy(listenHost: string, allowedHosts: readonly string[]): OriginPolicy {
  return {
    listenHost: WILDCARD_HOSTS.has(listenHost) ? null : listenHost.toLowerCase(),
    allowedHosts: new Set(allowedHosts.map((name) => name.toLowerCase())),
  };
}

export function isStateChanging(method: string): boolean {
  return STATE_CHANGING.has(method);
}

/** Throws 403 `host_not_allowed` unless the Host header names this listener (see the file comment). */
export function checkHost(policy: OriginPolicy, hostHeader: string | undefined): void {
  const host = hostHeader === undefined ? null : hostName(hostHeader);
  if (host !== null && hostAllowed(policy, host)) return;
  throw new HttpError(
    403,
    'host_not_allowed',
    'the Host header does not name this admin API: use its IP address or localhost, or list the name in KEYPOOL_ADMIN_ALLOWED_HOSTS',
  );
}

function hostAllowed(policy: OriginPolicy, host: string): boolean {
  if (host === 'localhost' || policy.allowedHosts.has(host)) return true;
  if (isIP(host) === 0) return false;
  // An IP literal cannot be rebound. When the listener has one specific address, only that one (and loopback,
  // which `localhost` resolves to) is this server.
  return policy.listenHost === null || host === policy.listenHost || isLoopbackIp(host);
}

/**
 * Throws 403 `cross_site_request` when a browser says a state-changing request comes from another site:
 * Sec-Fetch-Site other than same-origin or none (typed by the user), or an Origin whose host differs from Host.
 */
export function checkSameOrigin(headers: { readonly origin?: string | undefined; readonly secFetchSite?: string | undefined; readonly host?: string | undefined }): void {
  const site = headers.secFetchSite?.trim().toLowerCase();
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw crossSite();
  if (headers.origin === undefined) return;
  let originHost: string;
  try {
    originHost = new URL(headers.origin).host.toLowerCase();
  } catch {
    throw crossSite(); // `null` (sandboxed frames, file://) or garbage
  }
  if (headers.host === undefined || originHost !== headers.host.trim().toLowerCase()) throw crossSite();
}

function crossSite(): HttpError {
  return new HttpError(403, 'cross_site_request', 'cross-site requests may not change state; call the admin API directly (no browser page)');
}

/** `name:port`, `[v6]:port`, `name` -> lower-case name or IP (brackets removed); null when malformed. */
function hostName(header: string): string | null {
  const value = header.trim().toLowerCase();
  const match = /^(?:\[([0-9a-f:.]+)\]|([^\s:[\]/@]+))(?::\d{1,5})?$/.exec(value);
  if (!match) return null;
  return (match[1] ?? match[2] ?? '').replace(/\.$/, '') || null;
}

function isLoopbackIp(ip: string): boolean {
  return ip === '::1' || /^127\.\d+\.\d+\.\d+$/.test(ip);
}
