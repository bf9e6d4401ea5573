// Bearer-token authentication of admin requests. Tokens are compared as fixed-length SHA-256 digests with
// timingSafeEqual, so neither the comparison time nor an early length mismatch tells anything about the token.
import { createHash, timingSafeEqual } from 'node:crypto';
import { HttpError } from './http-errors.js';

export interface AdminToken {
  /** Recorded as the actor of every write made with this token (audit log). */
  readonly name: string;
  readonly token: string;
}

export type AuthResult = { readonly ok: true; readonly actor: string } | { readonly ok: false; readonly error: HttpError };

const CHALLENGE = { 'www-authenticate': 'Bearer realm="keypool-admin"' };
/** Longer headers are refused before hashing: no token is this long, and it bounds the work per request. */
const MAX_HEADER_CHARS = 4096;

export class TokenAuth {
  private readonly digests: ReadonlyArray<{ readonly name: string; readonly digest: Buffer }>;

  constructor(tokens: readonly AdminToken[]) {
    this.digests = tokens.map((t) => {
      if (t.token.length === 0) throw new Error(`admin token "${t.name}" is empty`);
      return { name: t.name, digest: sha256(t.token) };
    });
  }

  /** True when at least one token is configured (otherwise only loopback listeners may start). */
  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** Checks an `authorization` header value. Every configured token is compared, whichever matches. */
  authenticate(header: string | undefined): AuthResult {
    if (header === undefined || header.trim() === '') {
      return fail('missing_token', 'this route needs `authorization: Bearer <KEYPOOL_ADMIN_TOKEN>`');
    }
    const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header.length > MAX_HEADER_CHARS ? '' : header);
    if (!match) return fail('invalid_token', 'expected `authorization: Bearer <token>`');
    const presented = sha256(match[1]!);
    let actor: string | null = null;
    for (const { name, digest } of this.digests) {
      if (timingSafeEqual(presented, digest) && actor === null) actor = name;
    }
    return actor === null ? fail('invalid_token', 'the admin token is not valid') : { ok: true, actor };
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function fail(code: string, message: string): AuthResult {
  return { ok: false, error: new HttpError(401, code, message, null, CHALLENGE) };
}
