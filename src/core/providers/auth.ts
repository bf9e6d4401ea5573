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
