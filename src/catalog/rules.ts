// The rules operator input must satisfy, each written exactly once. Validation (src/catalog/validated.ts and the
// entity schemas), the admin API's path parameters, the Kong plugin's config and the SQL CHECK constraints
// (sql/migrations, kept in agreement by test/catalog/rules-sql.test.ts) all follow these definitions.

/**
 * A priority mapping's active window: days from WEEKDAYS (mon..sun) and start/end times matching WINDOW_TIME (HH:MM,
 * 00:00-23:59, start != end). Defined in the core, which evaluates them (src/core/priority/window.ts).
 */
export { WEEKDAYS, WINDOW_TIME, type Weekday } from '../core/priority/window.js';

/** A provider (pool) slug: `openai`, `azure-openai`. Lower-case letters, digits and inner dashes, 1-64 characters. */
export const PROVIDER_SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
export const PROVIDER_SLUG_MAX_CHARS = 64;

/** A row id: a UUID of any version, either case (stored and returned lower-case). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A tenant id as forwarded in `x-keypool-tenant`: 1-64 characters of A-Z a-z 0-9 . _ - */
export const TENANT_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The human-chosen part of an issued client key (`keys create --prefix prod` -> `kp_prod_<random>`): what prefix,
 * suffix, contains and regex mappings are meant to match. Letters, digits and inner dashes, 1-32 characters; no
 * underscore, so `kp_<prefix>_` always ends where the random part begins.
 */
export const KEY_PREFIX = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;

/** An existing client key brought in (`keys import`): 16-512 UTF-8 bytes, no whitespace or control characters. */
export const IMPORTED_KEY_BYTES = { min: 16, max: 512 } as const;

/** A lower-case HTTP header name that may carry a client key (Kong's `key_headers`, KEYPOOL_KEY_HEADERS). */
export const HEADER_NAME = /^[a-z0-9][a-z0-9_-]{0,127}$/;
export const HEADER_NAME_MAX_CHARS = 128;

/** Request priority: 0 is the highest, 9 the lowest. Mappings and `priority.default_priority` use this range. */
export const PRIORITY_RANGE = { min: 0, max: 9 } as const;
/** Priority of a request no mapping matches (and of every request while matching is off). */
export const DEFAULT_PRIORITY = 7;

/**
 * `queue.max_wait_ms`: longest a request waits in its replica's admission queue for an account to free up; 0 = never
 * wait (an exhausted pool answers 429 at once). The Envoy filter's `max_message_timeout` (envoy/*.yaml) must exceed
 * the largest value in use (keypool asks Envoy for the wait plus QUEUE_TIMEOUT_MARGIN_MS).
 */
export const QUEUE_MAX_WAIT_MS_RANGE = { min: 0, max: 30_000 } as const;
export const DEFAULT_QUEUE_MAX_WAIT_MS = 0;
/** `queue.max_length`: requests that may wait at once on one replica (all pools); one more gets 429 at once. */
export const QUEUE_MAX_LENGTH_RANGE = { min: 1, max: 100_000 } as const;
export const DEFAULT_QUEUE_MAX_LENGTH = 1000;
/**
 * `tokens.default_output`: output tokens a request reserves for exact TPM and token quotas when its body names no cap
 * (max_tokens...); unset = DEFAULT_OUTPUT_TOKENS of src/core/token-estimate.ts.
 */
export const TOKENS_DEFAULT_OUTPUT_RANGE = { min: 1, max: 1_000_000 } as const;

/** Inclusive numeric ranges and sizes (help texts and the OpenAPI document quote the same numbers). */
export const LIMITS = {
  nameMaxChars: 100,
  descriptionMaxChars: 500,
  reasonMaxChars: 500,
  allowedIpsMax: 256,
  /** Longest `expiresIn`: ten years. */
  expiresInMaxMs: 3650 * 86_400_000,
  rotateAfterDaysMin: 1,
  rotateAfterDaysMax: 3650,
  graceMaxMs: 30 * 86_400_000,
  weightMin: 1,
  weightMax: 1000,
  tierMin: 0,
  tierMax: 100,
  /** rpm/tpm/concurrency columns are INTEGER. */
  limitMin: 1,
  limitMax: 2_147_483_647,
  /** tpd_limit is BIGINT, bounded to 2^53 - 1 (exact as a JavaScript and a Lua number). */
  tokenDayLimitMax: 9_007_199_254_740_991,
  tagsMaxKeys: 50,
  tagKeyMaxChars: 64,
  tagValueMaxChars: 256,
  secretMaxChars: 4096,
} as const;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export function isTenantId(value: unknown): value is string {
  return typeof value === 'string' && TENANT_ID.test(value);
}

export function isProviderSlug(value: unknown): value is string {
  return typeof value === 'string' && PROVIDER_SLUG.test(value);
}

/**
 * A window's time zone: a name from `Intl.supportedValuesOf('timeZone')` (this runtime's ICU: canonical IANA names
 * such as `Europe/Berlin`, `America/New_York`) or `UTC`. SQL can only check the shape (TIME_ZONE_NAME); the zone list
 * itself is the catalog's check, and the snapshot leaves out a stored mapping whose zone this runtime does not know.
 */
export const TIME_ZONE_NAME = /^[A-Za-z0-9_+/-]{1,64}$/;

let timeZones: ReadonlySet<string> | null = null;

export function isTimeZone(value: unknown): value is string {
  timeZones ??= new Set([...Intl.supportedValuesOf('timeZone'), 'UTC']);
  return typeof value === 'string' && timeZones.has(value);
}

/** The listed name this runtime knows an alias by (`US/Eastern` -> `America/New_York`), for error hints; or null. */
export function listedTimeZoneFor(value: string): string | null {
  if (!TIME_ZONE_NAME.test(value)) return null;
  try {
    const resolved = new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
    return isTimeZone(resolved) ? resolved : null;
  } catch {
    return null;
  }
}

/**
 * One entry of an account's `models` (which models it may serve; an empty list = any): an exact model name
 * (`gpt-4o-2024-08-06`, `ft:gpt-4o-mini:acme::abc`, `meta-llama/Llama-3-70b`) or a prefix glob ending in one `*`
 * (`gpt-4o*` = every name starting `gpt-4o`). 1-128 characters of A-Z a-z 0-9 . _ : / @ + - before the optional `*`.
 * Only a trailing `*` is allowed, so the snapshot compiles every list into a name set plus a prefix list (no regex).
 */
export const MODEL_PATTERN = /^[A-Za-z0-9._:/@+-]{1,128}\*?$/;
/** At most this many entries in one account's `models`. */
export const MODELS_MAX = 64;

/**
 * An account's quota scope (`openai-org-acme/project-x`): accounts naming the same scope share the provider's rate
 * limit (the keys of one OpenAI project or Anthropic workspace). 1-128 characters of A-Z a-z 0-9 . _ : / @ -, starting
 * with a letter or digit. NULL = the account is its own scope.
 */
export const QUOTA_SCOPE = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/;

export function isModelPattern(value: unknown): value is string {
  return typeof value === 'string' && MODEL_PATTERN.test(value);
}

export function isQuotaScope(value: unknown): value is string {
  return typeof value === 'string' && QUOTA_SCOPE.test(value);
}
