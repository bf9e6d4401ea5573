// Shared-secret bearer tokens (the admin API's KEYPOOL_ADMIN_TOKEN, the ext_proc channel's KEYPOOL_GRPC_TOKEN):
// how one is read from an `authorization` value and how it is compared. Tokens are compared as fixed-length
// SHA-256 digests with timingSafeEqual, so neither the comparison time nor an early length mismatch tells anything
// about the token.
import { createHash, timingSafeEqual } from 'node:crypto';

/** Longer `authorization` values are refused before hashing: no token is this long, and it bounds the work. */
export const MAX_AUTHORIZATION_CHARS = 4096;

const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

/** The token of `Bearer <token>`; null for anything else (missing, another scheme, oversized, several tokens). */
export function bearerTokenOf(header: string | undefined): string | null {
  if (header === undefined || header.length > MAX_AUTHORIZATION_CHARS) return null;
  return BEARER.exec(header)?.[1] ?? null;
}

/** The form a configured token is kept in (the token itself need not stay in memory beside it). */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Constant-time comparison of a presented token with a configured digest. */
export function tokenMatches(presented: string, digest: Buffer): boolean {
  return timingSafeEqual(tokenDigest(presented), digest);
}
