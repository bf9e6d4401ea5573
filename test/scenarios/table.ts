// THE scenario table both gateway adapters must agree on (issue 4: "valid, unknown, revoked, expired, IP
// allow/deny, 429 cooldown, 401 invalidation, pool exhausted give the same statuses and bodies through Kong as
// through Envoy"). Pure data: envoy.test.ts runs it through the real Envoy, kong.test.ts through the real
// kong-js-pluginserver plus the Lua guard, parity.test.ts through both side by side. run.ts interprets it.
//
// Conventions:
// - Every scenario starts from a fresh pool for its provider (the accounts listed, nothing else) and a fresh
//   client key in the state given. The providers use the `priority` strategy, so with account `a` on tier 0 and
//   `b` on tier 1 every request goes to `a` unless `a` is blocked: which account serves is part of the answer.
// - `before` requests are the same request as the checked one, sent first; the upstream answers each with its
//   `reply` (or holds it in flight until the checked request has been answered).
// - Bodies are the exact bytes the client receives. For a denial that is keypool's JSON; for an allow it is the
//   upstream's answer passed through (Envoy proxies it; on Kong the guard passes and Kong proxies it).
// - `headers` are the response headers keypool sets on a denial (gateway-added ones such as date, server,
//   content-length are not keypool's); retry-after computed from a cooldown may read one second less when the
//   clock ticks between the upstream's 429 and the checked request (run.ts allows that, and nothing else).
// - `upstream` is what the provider receives on an allow: the keypool-relevant headers, with `{a}`/`{b}` standing
//   for the secret of that pooled account. The client's own key must never reach the upstream (always checked).

export type Provider = 'openai' | 'anthropic';
export type AccountLabel = 'a' | 'b';

export interface AccountSpec {
  readonly label: AccountLabel;
  /** Priority tier (0 first). */
  readonly tier: number;
  /** NULL = unlimited. */
  readonly maxConcurrency?: number;
}

export interface KeySpec {
  /** `unknown`: a well-formed key keypool never issued; `missing`: no key header at all. */
  readonly state: 'active' | 'revoked' | 'expired' | 'unknown' | 'missing';
  readonly allowedIps?: readonly string[];
  readonly tenantId?: string;
}

export interface RequestSpec {
  readonly provider: Provider;
  /** How the client presents its key. */
  readonly keyHeader: 'authorization' | 'x-api-key';
  /** The client's address as the gateway sees it (Envoy: the TCP peer of a loopback listener). */
  readonly clientAddress: '127.0.0.1' | '::1';
}

export interface UpstreamReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * `reply`: the upstream answers at once. `held`: the upstream sends nothing until the checked request has been
 * answered. `streaming`: the upstream sends its response headers (200, text/event-stream) at once and keeps the body
 * open until the checked request has been answered (an SSE completion in progress).
 */
export type Before = { readonly reply: UpstreamReply } | { readonly held: true } | { readonly streaming: true };

export interface ExpectedAnswer {
  readonly status: number;
  /** keypool's deny code, null for an allow. */
  readonly code: string | null;
  readonly body: string;
  /** keypool's response headers on a denial; null for an allow (the upstream's headers pass through). */
  readonly headers: Readonly<Record<string, string>> | null;
  /** Allows only: keypool-relevant headers the upstream received (null = absent). */
  readonly upstream: Readonly<Record<UpstreamHeader, string | null>> | null;
}

export interface Scenario {
  readonly name: string;
  readonly accounts: readonly AccountSpec[];
  readonly key: KeySpec;
  readonly request: RequestSpec;
  readonly before?: readonly Before[];
  /** What the client saw for each `before` request, and which account served it. */
  readonly expectBefore?: ReadonlyArray<{ readonly status: number; readonly account: AccountLabel | null }>;
  readonly expect: ExpectedAnswer;
  /** Account status in the config store once the scenario has settled (observations are written back). */
  readonly accountsAfter?: Readonly<Partial<Record<AccountLabel, 'active' | 'invalid'>>>;
}

export const UPSTREAM_HEADERS = ['authorization', 'x-api-key', 'x-keypool-priority', 'x-keypool-tenant'] as const;
export type UpstreamHeader = (typeof UPSTREAM_HEADERS)[number];

// ------------------------------------------------------------------------------------------------------------
// Upstream answers
// ------------------------------------------------------------------------------------------------------------

export const OPENAI_OK: UpstreamReply = {
  status: 200,
  headers: {
    'content-type': 'application/json',
    'x-ratelimit-limit-requests': '500',
    'x-ratelimit-remaining-requests': '499',
    'x-ratelimit-reset-requests': '120ms',
  },
  body: '{"id":"chatcmpl-1","object":"chat.completion","choices":[]}',
};

export const ANTHROPIC_OK: UpstreamReply = {
  status: 200,
  headers: { 'content-type': 'application/json', 'anthropic-ratelimit-requests-remaining': '49' },
  body: '{"id":"msg_1","type":"message","content":[]}',
};

export const OPENAI_STREAM: UpstreamReply = {
  status: 200,
  headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
  body: 'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n',
};

/** What the upstream answers a request that has no `before` reply of its own. */
export const OK_BY_PROVIDER: Readonly<Record<Provider, UpstreamReply>> = { openai: OPENAI_OK, anthropic: ANTHROPIC_OK };

const RATE_LIMITED_30S: UpstreamReply = {
  status: 429,
  headers: { 'content-type': 'application/json', 'retry-after': '30', 'x-ratelimit-remaining-requests': '0' },
  body: '{"error":{"type":"requests","code":"rate_limit_exceeded","message":"Rate limit reached"}}',
};

const BAD_CREDENTIAL: UpstreamReply = {
  status: 401,
  headers: { 'content-type': 'application/json' },
  body: '{"error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided"}}',
};

// ------------------------------------------------------------------------------------------------------------
// keypool's answers
// ------------------------------------------------------------------------------------------------------------

const JSON_ONLY = { 'content-type': 'application/json' } as const;

function denial(status: number, code: string, body: string, headers: Readonly<Record<string, string>> = JSON_ONLY): ExpectedAnswer {
  return { status, code, body, headers, upstream: null };
}

function allowed(reply: UpstreamReply, upstream: Readonly<Record<UpstreamHeader, string | null>>): ExpectedAnswer {
  return { status: reply.status, code: null, body: reply.body, headers: null, upstream };
}

/** Priority is the store's default_priority (7): mappings are off in these scenarios. */
const VIA_BEARER_A = { authorization: 'Bearer {a}', 'x-api-key': null, 'x-keypool-priority': '7', 'x-keypool-tenant': null } as const;
const VIA_BEARER_B = { ...VIA_BEARER_A, authorization: 'Bearer {b}' } as const;

const A_ONLY: readonly AccountSpec[] = [{ label: 'a', tier: 0 }];
const A_THEN_B: readonly AccountSpec[] = [
  { label: 'a', tier: 0 },
  { label: 'b', tier: 1 },
];
const OPENAI_V4: RequestSpec = { provider: 'openai', keyHeader: 'authorization', clientAddress: '127.0.0.1' };
const OPENAI_V6: RequestSpec = { ...OPENAI_V4, clientAddress: '::1' };

const INVALID_API_KEY = '{"error":{"type":"authentication_error","code":"invalid_api_key","message":"Invalid API key."}}';
const IP_NOT_ALLOWED = '{"error":{"type":"permission_error","code":"ip_not_allowed","message":"This API key is not allowed from this IP address."}}';
const POOL_EXHAUSTED = '{"error":{"type":"rate_limit_error","code":"pool_exhausted","message":"Every upstream credential for this provider is at capacity. Retry later."}}';

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'valid key (Authorization: Bearer, openai)',
    accounts: A_THEN_B,
    key: { state: 'active', tenantId: 'acme' },
    request: OPENAI_V4,
    expect: allowed(OPENAI_OK, { ...VIA_BEARER_A, 'x-keypool-tenant': 'acme' }),
  },
  {
    name: 'valid key (x-api-key, anthropic)',
    accounts: A_ONLY,
    key: { state: 'active' },
    request: { provider: 'anthropic', keyHeader: 'x-api-key', clientAddress: '127.0.0.1' },
    expect: allowed(ANTHROPIC_OK, { authorization: null, 'x-api-key': '{a}', 'x-keypool-priority': '7', 'x-keypool-tenant': null }),
  },
  {
    name: 'missing key',
    accounts: A_ONLY,
    key: { state: 'missing' },
    request: OPENAI_V4,
    expect: denial(
      401,
      'missing_api_key',
      '{"error":{"type":"authentication_error","code":"missing_api_key","message":"Missing API key. Send it in one of: Authorization: Bearer <key>, x-api-key, api-key, x-goog-api-key."}}',
    ),
  },
  {
    name: 'unknown key',
    accounts: A_ONLY,
    key: { state: 'unknown' },
    request: OPENAI_V4,
    expect: denial(401, 'invalid_api_key', INVALID_API_KEY),
  },
  {
    name: 'revoked key',
    accounts: A_ONLY,
    key: { state: 'revoked' },
    request: OPENAI_V4,
    expect: denial(401, 'key_revoked', '{"error":{"type":"authentication_error","code":"key_revoked","message":"This API key has been revoked."}}'),
  },
  {
    name: 'expired key',
    accounts: A_ONLY,
    key: { state: 'expired' },
    request: OPENAI_V4,
    expect: denial(401, 'key_expired', '{"error":{"type":"authentication_error","code":"key_expired","message":"This API key has expired."}}'),
  },
  {
    name: 'IPv4 client inside the allowlist',
    accounts: A_ONLY,
    key: { state: 'active', allowedIps: ['127.0.0.1/32'] },
    request: OPENAI_V4,
    expect: allowed(OPENAI_OK, VIA_BEARER_A),
  },
  {
    name: 'IPv4 client outside the allowlist',
    accounts: A_ONLY,
    key: { state: 'active', allowedIps: ['10.0.0.0/8'] },
    request: OPENAI_V4,
    expect: denial(403, 'ip_not_allowed', IP_NOT_ALLOWED),
  },
  {
    name: 'IPv6 client inside the allowlist',
    accounts: A_ONLY,
    key: { state: 'active', allowedIps: ['10.0.0.0/8', '::1/128'] },
    request: OPENAI_V6,
    expect: allowed(OPENAI_OK, VIA_BEARER_A),
  },
  {
    name: 'IPv6 client, IPv4-only allowlist',
    accounts: A_ONLY,
    key: { state: 'active', allowedIps: ['127.0.0.1/32'] },
    request: OPENAI_V6,
    expect: denial(403, 'ip_not_allowed', IP_NOT_ALLOWED),
  },
  {
    name: '429 cooldown: a answered 429 retry-after 30, the next request goes to b',
    accounts: A_THEN_B,
    key: { state: 'active' },
    request: OPENAI_V4,
    before: [{ reply: RATE_LIMITED_30S }],
    expectBefore: [{ status: 429, account: 'a' }],
    expect: allowed(OPENAI_OK, VIA_BEARER_B),
    accountsAfter: { a: 'active', b: 'active' },
  },
  {
    name: '401 invalidation: a answered 401, the next request goes to b and a is marked invalid',
    accounts: A_THEN_B,
    key: { state: 'active' },
    request: OPENAI_V4,
    before: [{ reply: BAD_CREDENTIAL }],
    expectBefore: [{ status: 401, account: 'a' }],
    expect: allowed(OPENAI_OK, VIA_BEARER_B),
    accountsAfter: { a: 'invalid', b: 'active' },
  },
  {
    name: 'pool exhausted: the only account is cooling down (retry-after from the provider)',
    accounts: A_ONLY,
    key: { state: 'active' },
    request: OPENAI_V4,
    before: [{ reply: RATE_LIMITED_30S }],
    expectBefore: [{ status: 429, account: 'a' }],
    expect: denial(429, 'pool_exhausted', POOL_EXHAUSTED, { ...JSON_ONLY, 'retry-after': '30' }),
    accountsAfter: { a: 'active' },
  },
  {
    name: 'pool exhausted: the only account is at max concurrency (one request in flight)',
    accounts: [{ label: 'a', tier: 0, maxConcurrency: 1 }],
    key: { state: 'active' },
    request: OPENAI_V4,
    before: [{ held: true }],
    expectBefore: [{ status: 200, account: 'a' }],
    expect: denial(429, 'pool_exhausted', POOL_EXHAUSTED, { ...JSON_ONLY, 'retry-after': '1' }),
  },
  {
    name: 'pool exhausted: the only account is at max concurrency (one SSE response still streaming)',
    accounts: [{ label: 'a', tier: 0, maxConcurrency: 1 }],
    key: { state: 'active' },
    request: OPENAI_V4,
    before: [{ streaming: true }],
    expectBefore: [{ status: 200, account: 'a' }],
    expect: denial(429, 'pool_exhausted', POOL_EXHAUSTED, { ...JSON_ONLY, 'retry-after': '1' }),
  },
  {
    name: 'no active account in the pool',
    accounts: [],
    key: { state: 'active' },
    request: OPENAI_V4,
    expect: denial(
      503,
      'no_healthy_account',
      '{"error":{"type":"api_error","code":"no_healthy_account","message":"the provider pool has no active account"}}',
    ),
  },
];
