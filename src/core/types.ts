// Shared vocabulary of the pure core. No I/O, no clock: every time is an input in epoch milliseconds.
import type { QuotaSubject } from './admission.js';

/** Lower-case header name -> value(s). Codecs normalise names before the core sees them. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/** An ordered list of header name/value pairs to emit (names lower-case). */
export type HeaderPairs = ReadonlyArray<readonly [name: string, value: string]>;

export type AuthStyle = 'bearer' | 'x-api-key' | 'api-key' | 'x-goog-api-key';
export type RateLimitDialect = 'openai' | 'anthropic' | 'azure' | 'gemini' | 'none';
export type Strategy = 'round-robin' | 'weighted-random' | 'priority' | 'least-loaded';
export type AccountStatus = 'active' | 'disabled' | 'invalid';
export type KeyStatus = 'active' | 'revoked';
export type MatchType = 'exact' | 'prefix' | 'suffix' | 'contains' | 'regex';

export const STRATEGIES: readonly Strategy[] = ['round-robin', 'weighted-random', 'priority', 'least-loaded'];
export const AUTH_STYLES: readonly AuthStyle[] = ['bearer', 'x-api-key', 'api-key', 'x-goog-api-key'];
export const RATE_LIMIT_DIALECTS: readonly RateLimitDialect[] = ['openai', 'anthropic', 'azure', 'gemini', 'none'];
export const MATCH_TYPES: readonly MatchType[] = ['exact', 'prefix', 'suffix', 'contains', 'regex'];

/** What an adapter learned about one incoming request. */
export interface RequestView {
  readonly headers: HeaderBag;
  /** Trusted client address as the gateway reports it (may carry a port: `1.2.3.4:5678`, `[::1]:443`); null when unknown. */
  readonly clientAddress: string | null;
  /** Provider slug the gateway route declares (e.g. `openai`). */
  readonly provider: string;
  /** Optional per-route strategy override (Kong plugin config). */
  readonly strategyOverride?: Strategy | undefined;
  /** Optional per-route list of client headers that may carry the key (defaults to the engine's list). */
  readonly keyHeaders?: readonly string[] | undefined;
  /**
   * The request body as the gateway buffered it, for pools that need the model (ProviderPool.needsModel); absent when
   * the gateway was not asked for it. `truncated`: the gateway had more than it passed on (over its limit).
   */
  readonly body?: RequestBody | undefined;
}

/**
 * A buffered request body, bounded by the adapter (MAX_MODEL_BODY_BYTES in src/core/models.ts). Empty bytes = the
 * request has none (NO_REQUEST_BODY).
 */
export interface RequestBody {
  readonly bytes: Uint8Array;
  /** The whole body did not fit: the adapter cut it (or the gateway said so). */
  readonly truncated: boolean;
}

/** Matches a normalised client IP against a compiled allowlist. */
export interface Allowlist {
  readonly cidrs: readonly string[];
  contains(ip: string): boolean;
}

/** A system (client) API key as the compiled snapshot holds it. The secret itself is never held, only digests. */
export interface SystemKey {
  readonly id: string;
  readonly name: string;
  readonly tenantId: string | null;
  readonly keyPrefix: string;
  readonly status: KeyStatus;
  readonly expiresAtMs: number | null;
  /** null = any address allowed. */
  readonly allowlist: Allowlist | null;
  /** The key's own request quota (rpm/rpd), compiled once; absent or null = unlimited. */
  readonly quota?: QuotaSubject | null | undefined;
}

/** One digest in the snapshot's lookup table. A rotated-out digest carries the end of its grace window. */
export interface KeyEntry {
  readonly key: SystemKey;
  /** null for the current digest; for the previous digest, the instant it stops working. */
  readonly graceEndsAtMs: number | null;
}

/** An upstream provider credential with its decrypted secret (held in memory only). */
export interface Account {
  readonly id: string;
  readonly providerSlug: string;
  readonly name: string;
  readonly secret: string;
  readonly weight: number;
  /** Priority tier: 0 is tried first. */
  readonly tier: number;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  readonly maxConcurrency: number | null;
  readonly status: AccountStatus;
  /**
   * Quota scope shared with sibling accounts (`openai-org-acme/project-x`; see AdmitCandidate.scope); null = the
   * account is its own scope.
   */
  readonly scope: string | null;
  /** Whether the account may serve `model` (its `models` list compiled once: src/core/models.ts). */
  readonly servesModel: (model: string) => boolean;
  /** True when the account serves only some models (a non-empty `models` list). */
  readonly restrictsModels: boolean;
}

export interface ProviderPool {
  readonly slug: string;
  readonly authStyle: AuthStyle;
  readonly dialect: RateLimitDialect;
  readonly strategy: Strategy;
  /** Active accounts only, ordered by (tier, name). */
  readonly accounts: readonly Account[];
  /**
   * Decisions of this pool need the request's model (src/core/models.ts): some account restricts its models, or the
   * provider's `per_model_state` switch is on and its dialect limits per model (compile.ts). When the model is not in
   * the path, adapters read the (bounded) body only for such pools; every other pool stays headers-only.
   */
  readonly needsModel: boolean;
  /**
   * Some account of the pool has a tpm_limit: its requests estimate and reserve tokens (exact TPM), so adapters read
   * their (bounded) bodies (compile.ts).
   */
  readonly countsTokens: boolean;
  /**
   * Decisions of this pool read the request's path and query (`:path`): for the model (needsModel), for an Azure
   * deployment's per-model state, or for a credential in the query (Google's `?key=`, refused). Envoy always passes
   * `:path`; Kong's plugin asks for it (one more PDK call) only for such pools (compile.ts).
   */
  readonly readsPath: boolean;
}

export interface PriorityResolution {
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  /** Id of the mapping that matched, null when the default applied. */
  readonly mappingId: string | null;
}

export interface PriorityMatcher {
  /** nowMs: the request's instant, against which mappings with an active window are evaluated. */
  resolve(presentedKey: string, nowMs: number): PriorityResolution;
}

export interface PrioritySettings {
  readonly enabled: boolean;
  readonly defaultPriority: number;
  /** `queue.max_wait_ms`: how long an exhausted pool's request may wait for an account, in priority order; 0 = never. */
  readonly queueMaxWaitMs: number;
  /** `queue.max_length`: requests waiting at once per replica. */
  readonly queueMaxLength: number;
  /**
   * Priority reserves (`priority.reserve`): index = priority, value = fraction of an account's capacity a request of
   * that priority must leave free for higher priorities. Applied only while `enabled`. Absent = DEFAULT_PRIORITY_RESERVE.
   */
  readonly reserve?: readonly number[] | undefined;
  /**
   * `tokens.default_output`: the output tokens a request reserves when its body names no cap (max_tokens...), for exact
   * TPM and token quotas (src/core/token-estimate.ts). Absent = DEFAULT_OUTPUT_TOKENS.
   */
  readonly tokensDefaultOutput?: number | undefined;
}

/** The compiled, immutable configuration every decision reads. Swapped atomically on reload. */
export interface Snapshot {
  readonly version: number;
  readonly loadedAtMs: number;
  /** Digest of a presented client key (HMAC-SHA256 with the server pepper), hex. */
  readonly digestKey: (presentedKey: string) => string;
  readonly keysByDigest: ReadonlyMap<string, KeyEntry>;
  readonly pools: ReadonlyMap<string, ProviderPool>;
  readonly priority: PriorityMatcher;
  readonly prioritySettings: PrioritySettings;
  /**
   * Tenant rows by id, as quota subjects (limits null = unlimited). A tenant id with no row has no tenant quota and is
   * counted as `other` in per-tenant metrics. Absent = no tenant rows.
   */
  readonly tenants?: ReadonlyMap<string, QuotaSubject> | undefined;
  /** Token prices by provider slug, then model pattern (src/core/usage-cost.ts). Absent = no prices (cost 0). */
  readonly prices?: ReadonlyMap<string, import('./usage-cost.js').ProviderPrices> | undefined;
  /** Some key or tenant has a token quota (tpm/tpd): requests of every pool may count tokens (compile.ts). */
  readonly anyTokenQuota: boolean;
}

export type DenyCode =
  | 'missing_api_key'
  | 'invalid_api_key'
  | 'key_revoked'
  | 'key_expired'
  | 'ip_not_allowed'
  | 'unknown_provider'
  | 'pool_exhausted'
  | 'model_not_available'
  | 'invalid_request'
  | 'quota_exceeded'
  | 'priority_shed'
  | 'no_healthy_account'
  | 'state_unavailable'
  | 'keypool_unavailable';

export type AuditAction =
  | 'created'
  | 'updated'
  | 'rotated'
  | 'revoked'
  | 'deleted'
  | 'denied_ip'
  | 'denied_expired'
  | 'denied_revoked'
  | 'account_created'
  | 'account_updated'
  | 'account_disabled'
  | 'account_enabled'
  | 'account_invalidated'
  | 'account_deleted'
  | 'mapping_created'
  | 'mapping_updated'
  | 'mapping_deleted'
  | 'tenant_created'
  | 'tenant_updated'
  | 'tenant_deleted'
  | 'config_set'
  | 'audit_pruned';

export interface Deny {
  readonly kind: 'deny';
  readonly status: number;
  readonly code: DenyCode;
  readonly message: string;
  /** Extra response headers (e.g. retry-after). */
  readonly headers: HeaderPairs;
  /** JSON body in the OpenAI error shape. */
  readonly body: string;
  /** Present when the denial must be written to the audit log. */
  readonly audit?: { readonly keyId: string; readonly action: AuditAction } | undefined;
}

export interface Allow {
  readonly kind: 'allow';
  readonly keyId: string;
  readonly accountId: string;
  readonly accountName: string;
  readonly priority: number;
  readonly tenant: string | null;
  /** Headers to remove upstream (client credentials); applied before setHeaders. */
  readonly removeHeaders: readonly string[];
  /** Headers to set upstream (provider auth, x-keypool-priority, x-keypool-tenant). */
  readonly setHeaders: HeaderPairs;
  /** The request's model when the decision needed it (src/core/models.ts); null otherwise. */
  readonly model?: string | null;
}

export type Decision = Allow | Deny;

/** Limits the provider reported in its response headers; null = not reported. */
export interface LearnedLimits {
  readonly requestsLimit: number | null;
  readonly requestsRemaining: number | null;
  readonly requestsResetAtMs: number | null;
  readonly tokensLimit: number | null;
  readonly tokensRemaining: number | null;
  readonly tokensResetAtMs: number | null;
}

export type ObservationOutcome =
  | 'success'
  | 'rate_limited'
  | 'quota_exhausted'
  | 'invalid_credential'
  | 'client_error'
  | 'server_error';

/** What one upstream response says about the account that served it. */
export interface Observation {
  readonly outcome: ObservationOutcome;
  readonly status: number;
  /** Set on rate_limited: the account must not be used before this instant. */
  readonly cooldownUntilMs: number | null;
  readonly learned: LearnedLimits;
  /**
   * A reset instant the provider reported lay further ahead than any real provider window (see MAX_REQUESTS_RESET_MS
   * in src/core/response.ts) and was cut to the cap: the provider's value, for a log line. Absent otherwise.
   */
  readonly cappedResetAtMs?: number;
}

/** The body of a request that has none (its headers ended the message): it names no model. */
export const NO_REQUEST_BODY: RequestBody = Object.freeze({ bytes: new Uint8Array(0), truncated: false });
