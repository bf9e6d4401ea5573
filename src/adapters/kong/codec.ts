// Pure translation between what Kong's plugin server hands a JS plugin and keypool's core views.
// No PDK calls, no I/O: plugin.ts does the calls, this file decides what they carry.
import { CLIENT_CREDENTIAL_HEADERS } from '../../core/apikey.js';
import { deny } from '../../core/errors.js';
import {
  AUTH_STYLES,
  STRATEGIES,
  type Decision,
  type DenyCode,
  type HeaderBag,
  type HeaderPairs,
  type RequestBody,
  type RequestView,
  type Strategy,
} from '../../core/types.js';
import { MAX_MODEL_BODY_BYTES } from '../../core/models.js';
import type { RequestOutcome, Ticket } from '../../ports.js';
import { HEADER_NAME, isProviderSlug } from '../../catalog/rules.js';
import { MAX_KEY_HEADERS } from './schema.js';

/** kong.ctx.shared key holding keypool's record for the bundled Lua guard (access) and for the log phase. */
export const DECISION_KEY = 'keypool_decision';

/** Kong's kong.log.serialize already hides these request headers. */
const SERIALIZE_REDACTED_BY_KONG: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization']);

/** Request headers that carry an upstream credential, one per auth style. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(
  AUTH_STYLES.map((style) => (style === 'bearer' ? 'authorization' : style)),
);

/** Client credential headers Kong would serialize in clear: keypool hides them itself, on every outcome. */
const CLIENT_CREDENTIALS_TO_REDACT: readonly string[] = CLIENT_CREDENTIAL_HEADERS.filter((name) => !SERIALIZE_REDACTED_BY_KONG.has(name));

/** Value Kong itself writes over a hidden header in serialized logs. */
export const REDACTED = 'REDACTED';


/** The plugin's route/service configuration after validation (Kong field names in comments). */
export interface KongPluginConfig {
  /** `provider`: slug of the credential pool this route draws from (e.g. `openai`). */
  readonly provider: string;
  /** `strategy`: overrides the pool's selection strategy on this route; null = the pool's own. */
  readonly strategy: Strategy | null;
  /** `key_headers`: client headers that may carry the keypool key on this route; null = the engine's list. */
  readonly keyHeaders: readonly string[] | null;
}

export type ConfigResult =
  | { readonly ok: true; readonly config: KongPluginConfig }
  | { readonly ok: false; readonly error: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStrategy(value: unknown): value is Strategy {
  return typeof value === 'string' && (STRATEGIES as readonly string[]).includes(value);
}

/**
 * Validates the config Kong sends with plugin.StartInstance. Kong has already checked it against `Schema`;
 * this repeats the checks so a hand-built config fails just as clearly. Unknown fields (`__plugin_id`,
 * `__seq__`, `route_id`, ...) are Kong's and are ignored. JSON null means "not set".
 */
export function parseKongConfig(raw: unknown): ConfigResult {
  if (!isRecord(raw)) return { ok: false, error: 'keypool config must be an object' };
  const provider = raw['provider'];
  if (typeof provider !== 'string' || !isProviderSlug(provider)) {
    return { ok: false, error: 'keypool config.provider is required: a lower-case provider slug such as "openai"' };
  }
  const strategy = raw['strategy'] ?? null;
  if (strategy !== null && !isStrategy(strategy)) {
    return { ok: false, error: `keypool config.strategy must be one of: ${STRATEGIES.join(', ')}` };
  }
  const keyHeaders = raw['key_headers'] ?? null;
  if (keyHeaders !== null && !isHeaderNameList(keyHeaders)) {
    return {
      ok: false,
      error: `keypool config.key_headers must list 1 to ${MAX_KEY_HEADERS} lower-case header names such as "x-api-key"`,
    };
  }
  return { ok: true, config: { provider, strategy, keyHeaders } };
}

function isHeaderNameList(value: unknown): value is string[] {
  return (
    Array.isArray(value) &&
    value.length >= 1 &&
    value.length <= MAX_KEY_HEADERS &&
    value.every((name) => typeof name === 'string' && HEADER_NAME.test(name))
  );
}

/**
 * Headers as kong.request.get_headers / kong.response.get_headers return them over the socket: a map of
 * lower-case name -> array of values (a valueless header arrives as an empty array). kong-pdk's own test
 * harness returns [name, value] pairs instead; both are accepted.
 */
export function headerBagFromKong(raw: unknown): HeaderBag {
  // Prototype-free: a header named `constructor` or `__proto__` is data, and an absent one reads undefined.
  const bag = Object.create(null) as Record<string, string | readonly string[]>;
  if (Array.isArray(raw)) {
    for (const pair of raw) {
      if (Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'string') {
        addHeader(bag, pair[0].toLowerCase(), pair[1]);
      }
    }
    return bag;
  }
  if (!isRecord(raw)) return bag;
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value === 'string') addHeader(bag, name.toLowerCase(), value);
    else if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'string') addHeader(bag, name.toLowerCase(), item);
    }
  }
  return bag;
}

function addHeader(bag: Record<string, string | readonly string[]>, name: string, value: string): void {
  const existing = bag[name];
  if (existing === undefined) bag[name] = value;
  else bag[name] = typeof existing === 'string' ? [existing, value] : [...existing, value];
}

/** kong.client.get_forwarded_ip answers a string, or nil when Kong does not know. */
export function clientAddressFromKong(raw: unknown): string | null {
  return typeof raw === 'string' && raw.length > 0 ? raw : null;
}

/**
 * kong.request.get_raw_body() as the core reads it: a string or bytes; anything else (nil: the body did not fit
 * Kong's in-memory buffer) counts as cut (`truncated`), which the engine refuses on pools that need the model.
 * Bounded: more than MAX_MODEL_BODY_BYTES counts as cut too.
 */
export function requestBodyFromKong(raw: unknown): RequestBody {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw instanceof Uint8Array ? raw : null;
  if (bytes === null) return { bytes: new Uint8Array(0), truncated: true };
  return bytes.length > MAX_MODEL_BODY_BYTES ? { bytes: bytes.subarray(0, MAX_MODEL_BODY_BYTES), truncated: true } : { bytes, truncated: false };
}

export function requestViewFromKong(config: KongPluginConfig, headers: HeaderBag, clientAddress: string | null): RequestView {
  return {
    headers,
    clientAddress,
    provider: config.provider,
    strategyOverride: config.strategy ?? undefined,
    keyHeaders: config.keyHeaders ?? undefined,
  };
}

/**
 * What keypool leaves in kong.ctx.shared[DECISION_KEY]. The Lua guard (kong/guard.lua) answers every
 * `deny` with exactly this status, body and headers, passes `allow`, and answers 503 when nothing is there.
 */
export type KongRecord = KongAllowRecord | KongDenyRecord;

export interface KongAllowRecord {
  readonly action: 'allow';
  /** Carried to the log phase for observe() and release(); null when the engine gave none. */
  readonly ticket: Ticket | null;
}

export interface KongDenyRecord {
  readonly action: 'deny';
  readonly status: number;
  readonly code: DenyCode;
  /** JSON in the same shape the Envoy adapter sends. */
  readonly body: string;
  /** Response headers for kong.response.exit: content-type first, then the denial's own (retry-after...). */
  readonly headers: Readonly<Record<string, string>>;
}

export function recordFromOutcome(outcome: RequestOutcome): KongRecord {
  return outcome.decision.kind === 'allow'
    ? { action: 'allow', ticket: outcome.ticket }
    : denyRecord(outcome.decision);
}

export function denyRecord(decision: Extract<Decision, { kind: 'deny' }>): KongDenyRecord {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  for (const [name, value] of decision.headers) {
    const lower = name.toLowerCase();
    if (lower !== 'content-type') headers[lower] = value;
  }
  return { action: 'deny', status: decision.status, code: decision.code, body: decision.body, headers };
}

/** The record for every internal failure (runtime unavailable, PDK error, engine rejection, deadline). */
export const UNAVAILABLE_RECORD: KongDenyRecord = Object.freeze(denyRecord(deny('keypool_unavailable')));

/** Upstream changes for an allowed request, shaped for as few PDK calls as possible. */
export interface UpstreamMutation {
  /** kong.service.request.clear_header, one call each: removed headers that `set` does not overwrite anyway. */
  readonly clear: readonly string[];
  /** One kong.service.request.set_headers call (set replaces every existing value); empty = no call. */
  readonly set: Readonly<Record<string, string | readonly string[]>>;
  /** kong.log.set_serialize_value(key, REDACTED), one call each: injected credentials Kong would log in clear. */
  readonly redact: readonly string[];
}

export function upstreamMutation(removeHeaders: readonly string[], setHeaders: HeaderPairs): UpstreamMutation {
  const set = Object.create(null) as Record<string, string | readonly string[]>;
  for (const [rawName, value] of setHeaders) {
    const name = rawName.toLowerCase();
    const existing = set[name];
    set[name] = existing === undefined ? value : typeof existing === 'string' ? [existing, value] : [...existing, value];
  }
  const clear = [...new Set(removeHeaders.map((name) => name.toLowerCase()))].filter((name) => !(name in set));
  const redact = Object.keys(set)
    .filter((name) => CREDENTIAL_HEADERS.has(name) && !SERIALIZE_REDACTED_BY_KONG.has(name))
    .map((name) => `request.headers.${name}`);
  return { clear, set, redact };
}

/**
 * kong.log.set_serialize_value keys hiding the client's credential headers in kong.log.serialize() (what http-log,
 * file-log and friends write), whatever the outcome: every such header the request carries, or, when the headers
 * could not be read (null), every one of them.
 */
export function clientCredentialRedactions(headers: HeaderBag | null): string[] {
  return CLIENT_CREDENTIALS_TO_REDACT.filter((name) => headers === null || headers[name] !== undefined).map((name) => `request.headers.${name}`);
}

/**
 * Reads the ticket back from kong.ctx.shared in the log phase. The record made a round trip through Lua
 * (MessagePack both ways), so every field is checked rather than trusted.
 */
export function ticketFromRecord(raw: unknown): Ticket | null {
  if (!isRecord(raw) || raw['action'] !== 'allow') return null;
  const ticket = raw['ticket'];
  if (!isRecord(ticket)) return null;
  const { pool, accountId, accountName, leaseId, keyId, startedAtMs, holdsConcurrencySlot, model } = ticket;
  if (
    typeof pool !== 'string' ||
    typeof accountId !== 'string' ||
    typeof accountName !== 'string' ||
    typeof leaseId !== 'string' ||
    typeof keyId !== 'string' ||
    typeof startedAtMs !== 'number' ||
    typeof holdsConcurrencySlot !== 'boolean' ||
    !(model === undefined || model === null || typeof model === 'string')
  ) {
    return null;
  }
  // Optional: a null went through Lua as nil and comes back absent (the engine then reads the scope from the snapshot).
  const { scope } = ticket;
  return {
    pool,
    accountId,
    accountName,
    leaseId,
    keyId,
    startedAtMs,
    holdsConcurrencySlot,
    model: typeof model === 'string' ? model : null,
    ...(typeof scope === 'string' ? { scope } : {}),
  };
}

/** kong.response.get_status in the log phase: the status sent to the client. */
export function statusFromKong(raw: unknown): number | null {
  return typeof raw === 'number' && Number.isInteger(raw) && raw >= 100 && raw <= 599 ? raw : null;
}
