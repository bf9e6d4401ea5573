// Every way keypool refuses a request: its HTTP status, its OpenAI-style error type and the message
// clients see. Denials are values (Deny), never exceptions; adapters only translate them.
import type { AuditAction, Deny, DenyCode, HeaderPairs } from './types.js';

export type DenyErrorType = 'authentication_error' | 'permission_error' | 'rate_limit_error' | 'api_error';

export interface DenySpec {
  readonly status: number;
  readonly type: DenyErrorType;
  readonly defaultMessage: string;
}

export const DENY_SPECS: Readonly<Record<DenyCode, DenySpec>> = {
  missing_api_key: {
    status: 401,
    type: 'authentication_error',
    defaultMessage: 'Missing API key. Send it as "Authorization: Bearer <key>" or in the x-api-key header.',
  },
  invalid_api_key: { status: 401, type: 'authentication_error', defaultMessage: 'Invalid API key.' },
  key_revoked: { status: 401, type: 'authentication_error', defaultMessage: 'This API key has been revoked.' },
  key_expired: { status: 401, type: 'authentication_error', defaultMessage: 'This API key has expired.' },
  ip_not_allowed: {
    status: 403,
    type: 'permission_error',
    defaultMessage: 'This API key is not allowed from this IP address.',
  },
  unknown_provider: {
    status: 503,
    type: 'api_error',
    defaultMessage: "No credential pool is configured for this route's provider.",
  },
  pool_exhausted: {
    status: 429,
    type: 'rate_limit_error',
    defaultMessage: 'Every upstream credential for this provider is at capacity. Retry later.',
  },
  no_healthy_account: {
    status: 503,
    type: 'api_error',
    defaultMessage: 'No healthy upstream credential is available for this provider.',
  },
  state_unavailable: {
    status: 503,
    type: 'api_error',
    defaultMessage: 'Rate-limit state is unavailable. Retry later.',
  },
  keypool_unavailable: { status: 503, type: 'api_error', defaultMessage: 'keypool is unavailable.' },
};

const NO_HEADERS: HeaderPairs = Object.freeze([]);

function errorBody(spec: DenySpec, code: DenyCode, message: string): string {
  return JSON.stringify({ error: { type: spec.type, code, message } });
}

// The common denials carry the default message and no extra headers: build them once so the hot path
// returns a shared frozen object instead of serialising JSON per request.
const DEFAULT_DENIALS = new Map<DenyCode, Deny>(
  (Object.keys(DENY_SPECS) as DenyCode[]).map((code) => {
    const spec = DENY_SPECS[code];
    const denial: Deny = Object.freeze({
      kind: 'deny',
      status: spec.status,
      code,
      message: spec.defaultMessage,
      headers: NO_HEADERS,
      body: errorBody(spec, code, spec.defaultMessage),
    });
    return [code, denial] as const;
  }),
);

export interface DenyOptions {
  /** Replaces the default message (never put secrets in it: it reaches the client). */
  readonly message?: string | undefined;
  /** Adds `retry-after`; 429 denials always get one (at least 1 second). */
  readonly retryAfterSec?: number | undefined;
  readonly audit?: { readonly keyId: string; readonly action: AuditAction } | undefined;
}

/** Builds the denial for a code. Without options (the common case) it returns a precomputed object. */
export function deny(code: DenyCode, options?: DenyOptions): Deny {
  const base = DEFAULT_DENIALS.get(code) ?? DEFAULT_DENIALS.get('keypool_unavailable');
  if (base === undefined) throw new Error('deny table is incomplete'); // unreachable: built from DENY_SPECS
  const retryAfterSec = options?.retryAfterSec ?? (base.status === 429 ? 1 : undefined);
  const message = options?.message;
  const audit = options?.audit;
  if (retryAfterSec === undefined && message === undefined && audit === undefined) return base;
  const custom = message !== undefined && message !== base.message;
  return {
    kind: 'deny',
    status: base.status,
    code: base.code,
    message: custom ? message : base.message,
    headers: retryAfterSec === undefined ? NO_HEADERS : [['retry-after', String(wholeSecondsAtLeastOne(retryAfterSec))]],
    body: custom ? errorBody(DENY_SPECS[base.code], base.code, message) : base.body,
    ...(audit === undefined ? {} : { audit }),
  };
}

// A retry-after of 0 invites an immediate retry storm; fractions are not valid header syntax.
function wholeSecondsAtLeastOne(seconds: number): number {
  return Number.isFinite(seconds) && seconds > 1 ? Math.ceil(seconds) : 1;
}

/** Seconds a client should wait until retryAtMs: rounded up, at least 1; unknown (null) -> 1. */
export function retryAfterSeconds(retryAtMs: number | null, nowMs: number): number {
  if (retryAtMs === null) return 1;
  return wholeSecondsAtLeastOne((retryAtMs - nowMs) / 1_000);
}
