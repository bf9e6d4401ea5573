// Every way keypool refuses a request: its HTTP status, its OpenAI-style error type and the message
// clients see. Denials are values (Deny), never exceptions; adapters only translate them.
// The body speaks the route's provider: OpenAI's shape by default, Anthropic's and Google's on their routes (see
// inProviderShape), so each provider's SDK raises its own exception class with keypool's message in it.
import type { AuditAction, Deny, DenyCode, HeaderPairs, RateLimitDialect } from './types.js';

export type DenyErrorType = 'authentication_error' | 'permission_error' | 'rate_limit_error' | 'invalid_request_error' | 'api_error';

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
  model_not_available: {
    status: 400,
    type: 'invalid_request_error',
    defaultMessage: 'No upstream credential for this provider serves the requested model.',
  },
  invalid_request: {
    status: 400,
    type: 'invalid_request_error',
    defaultMessage: 'keypool could not read the model this request is for.',
  },
  quota_exceeded: {
    status: 429,
    type: 'rate_limit_error',
    defaultMessage: 'This API key or its tenant has used up its request or token quota. Retry later.',
  },
  priority_shed: {
    status: 429,
    type: 'rate_limit_error',
    defaultMessage: 'Upstream capacity is held back for higher-priority requests. Retry later.',
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

// ---------------------------------------------------------------------------------------------
// Provider-shaped error bodies
// ---------------------------------------------------------------------------------------------

/** The error body families clients' SDKs parse. Azure, OpenRouter and OpenAI-compatible APIs use OpenAI's. */
export type ErrorShape = 'openai' | 'anthropic' | 'google';

/** A route's error shape follows its provider's dialect; an unknown provider gets OpenAI's. */
export function errorShapeFor(dialect: RateLimitDialect | undefined): ErrorShape {
  if (dialect === 'anthropic') return 'anthropic';
  if (dialect === 'gemini') return 'google';
  return 'openai';
}

/** Anthropic's error types (https://docs.anthropic.com/en/api/errors), by keypool code. */
const ANTHROPIC_TYPES: Readonly<Record<DenyCode, string>> = {
  missing_api_key: 'authentication_error',
  invalid_api_key: 'authentication_error',
  key_revoked: 'authentication_error',
  key_expired: 'authentication_error',
  ip_not_allowed: 'permission_error',
  unknown_provider: 'api_error',
  pool_exhausted: 'rate_limit_error',
  model_not_available: 'invalid_request_error',
  invalid_request: 'invalid_request_error',
  quota_exceeded: 'rate_limit_error',
  priority_shed: 'rate_limit_error',
  no_healthy_account: 'overloaded_error',
  state_unavailable: 'api_error',
  keypool_unavailable: 'api_error',
};

/** google.rpc.Code names by HTTP status, as Google APIs put them in `error.status`. */
const GOOGLE_STATUS: Readonly<Record<number, string>> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  429: 'RESOURCE_EXHAUSTED',
  503: 'UNAVAILABLE',
};

/**
 * The body of a denial in an error shape. keypool's own code stays machine-readable in a field each SDK ignores:
 * `error.code` (OpenAI, Anthropic) or a google.rpc.ErrorInfo `reason` in `error.details` (Google).
 */
export function errorBodyIn(shape: ErrorShape, status: number, code: DenyCode, message: string): string {
  const spec = DENY_SPECS[code];
  switch (shape) {
    case 'openai':
      return errorBody(spec, code, message);
    case 'anthropic':
      return JSON.stringify({ type: 'error', error: { type: ANTHROPIC_TYPES[code], message, code } });
    case 'google':
      return JSON.stringify({
        error: {
          code: status,
          message,
          status: GOOGLE_STATUS[status] ?? 'UNKNOWN',
          details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: code.toUpperCase(), domain: 'keypool' }],
        },
      });
  }
}

// Default-message bodies per shape, built once: the hot path only swaps the body string.
const SHAPED_DEFAULT_BODIES = new Map<string, string>(
  (['anthropic', 'google'] as const).flatMap((shape) =>
    (Object.keys(DENY_SPECS) as DenyCode[]).map((code) => {
      const spec = DENY_SPECS[code];
      return [`${shape}:${code}`, errorBodyIn(shape, spec.status, code, spec.defaultMessage)] as const;
    }),
  ),
);

/** The same denial with its body in the route's provider shape (status, headers, audit unchanged). */
export function inProviderShape(denial: Deny, dialect: RateLimitDialect | undefined): Deny {
  const shape = errorShapeFor(dialect);
  if (shape === 'openai') return denial;
  const body =
    denial.message === DENY_SPECS[denial.code].defaultMessage
      ? SHAPED_DEFAULT_BODIES.get(`${shape}:${denial.code}`)!
      : errorBodyIn(shape, denial.status, denial.code, denial.message);
  return { ...denial, body };
}
