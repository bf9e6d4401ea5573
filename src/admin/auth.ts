// Bearer-token authentication of admin requests (parsing and constant-time comparison: secrets/bearer-token.ts).
import { bearerTokenOf, tokenDigest, tokenMatches } from '../secrets/bearer-token.js';
import { HttpError } from './http-errors.js';

export interface AdminToken {
  /** Recorded as the actor of every write made with this token (audit log). */
  readonly name: string;
  readonly token: string;
}

export type AuthResult = { readonly ok: true; readonly actor: string } | { readonly ok: false; readonly error: HttpError };

const CHALLENGE = { 'www-authenticate': 'Bearer realm="keypool-admin"' };

export class TokenAuth {
  private readonly digests: ReadonlyArray<{ readonly name: string; readonly digest: Buffer }>;

  constructor(tokens: readonly AdminToken[]) {
    this.digests = tokens.map((t) => {
      if (t.token.length === 0) throw new Error(`admin token "${t.name}" is empty`);
      return { name: t.name, digest: tokenDigest(t.token) };
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
    const presented = bearerTokenOf(header);
    if (presented === null) return fail('invalid_token', 'expected `authorization: Bearer <token>`');
    let actor: string | null = null;
    for (const { name, digest } of this.digests) {
      if (tokenMatches(presented, digest) && actor === null) actor = name;
    }
    return actor === null ? fail('invalid_token', 'the admin token is not valid') : { ok: true, actor };
  }
}

function fail(code: string, message: string): AuthResult {
  return { ok: false, error: new HttpError(401, code, message, null, CHALLENGE) };
}
