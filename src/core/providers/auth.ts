// How each provider expects its upstream key: the header name and, for bearer, the scheme.
import type { AuthStyle } from '../types.js';

/** Header name that carries the upstream key in each style (lower-case, as codecs emit them). */
export const AUTH_HEADER_NAMES: Readonly<Record<AuthStyle, string>> = {
  bearer: 'authorization',
  'x-api-key': 'x-api-key',
  'api-key': 'api-key',
  'x-goog-api-key': 'x-goog-api-key',
};

export function authHeaderName(style: AuthStyle): string {
  return AUTH_HEADER_NAMES[style] ?? 'authorization';
}

/** The header to set upstream for an account's secret. */
export function authHeaderFor(style: AuthStyle, secret: string): readonly [string, string] {
  if (style === 'bearer') return ['authorization', `Bearer ${secret}`];
  return [authHeaderName(style), secret];
}

/**
 * Query parameters a provider reads as its API key, by auth style: Google's APIs take `?key=` as well as the
 * `x-goog-api-key` header. keypool never forwards one: it would be a client credential reaching the provider, and
 * were the provider to prefer it over the injected header, its "key invalid" answer would invalidate the pooled
 * account for everyone.
 */
const CREDENTIAL_QUERY_PARAMETERS: Readonly<Record<AuthStyle, readonly string[]>> = {
  bearer: [],
  'x-api-key': [],
  'api-key': [],
  'x-goog-api-key': ['key'],
};

/** Does the style's provider read a key from the query string (so keypool must look at the request's query)? */
export function readsQueryCredential(style: AuthStyle): boolean {
  return (CREDENTIAL_QUERY_PARAMETERS[style] ?? []).length > 0;
}

/** The first credential query parameter (CREDENTIAL_QUERY_PARAMETERS) `path` carries, null when none. */
export function credentialQueryParameterIn(path: string | undefined, style: AuthStyle): string | null {
  const names = CREDENTIAL_QUERY_PARAMETERS[style] ?? [];
  if (names.length === 0 || path === undefined) return null;
  const query = path.indexOf('?');
  if (query < 0) return null;
  for (const pair of path.slice(query + 1).split('&')) {
    const equals = pair.indexOf('=');
    const raw = equals < 0 ? pair : pair.slice(0, equals);
    let name: string;
    try {
      name = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      name = raw;
    }
    if (names.includes(name)) return name;
  }
  return null;
}
