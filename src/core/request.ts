// The request half of the decision core: who is calling, from where, how important, and which upstream
// credential to inject. Account admission (capacity, health) happens between authorizeRequest and
// buildAllow, in the engine, against the rate-state store; denyForAdmission turns its refusal into a Deny.
import { credentialHeadersIn, extractClientKey } from './apikey.js';
import { normaliseClientAddress } from './cidr.js';
import { deny, retryAfterSeconds } from './errors.js';
import type { QuotaScope, QuotaWindow } from './admission.js';
import { authHeaderFor, authHeaderName, credentialQueryParameterIn } from './providers/auth.js';
import type {
  Account,
  Allow,
  Deny,
  HeaderBag,
  PriorityResolution,
  ProviderPool,
  RequestView,
  Snapshot,
  SystemKey,
} from './types.js';

/** A request whose caller, address and provider passed; only account admission remains. */
export interface Authorized {
  readonly kind: 'authorized';
  readonly key: SystemKey;
  /** Priority and tenant; tenantId already falls back to the key's tenant. */
  readonly priority: PriorityResolution;
  readonly pool: ProviderPool;
  /** Every client credential header present: the configured key headers used and CLIENT_CREDENTIAL_HEADERS (all removed upstream). */
  readonly credentialHeaders: readonly string[];
}

export const PRIORITY_HEADER = 'x-keypool-priority';
export const TENANT_HEADER = 'x-keypool-tenant';

/** Headers of a view that has none: inherits nothing, like every header bag. */
const NO_HEADERS: HeaderBag = Object.freeze(Object.create(null) as HeaderBag);

/** Longest provider slug echoed back in an unknown_provider message. */
const MAX_ECHOED_PROVIDER = 64;

/**
 * Steps 1-4 of a decision: client key, key state, client address, provider pool, priority.
 * Never throws on request input: every refusal is a Deny value.
 */
export function authorizeRequest(
  view: RequestView,
  snapshot: Snapshot,
  nowMs: number,
  defaultKeyHeaders: readonly string[],
): Authorized | Deny {
  const headers = view.headers ?? NO_HEADERS;
  const extracted = extractClientKey(headers, view.keyHeaders ?? defaultKeyHeaders);
  if (!extracted.ok) return deny(extracted.code, { message: extracted.message });

  const entry = snapshot.keysByDigest.get(snapshot.digestKey(extracted.key));
  // A rotated-out secret past its grace is as unknown as a never-issued one: say nothing about the key.
  if (entry === undefined || (entry.graceEndsAtMs !== null && entry.graceEndsAtMs <= nowMs)) {
    return deny('invalid_api_key');
  }
  const key = entry.key;
  if (key.status === 'revoked') return deny('key_revoked', { audit: { keyId: key.id, action: 'denied_revoked' } });
  if (key.expiresAtMs !== null && key.expiresAtMs <= nowMs) {
    return deny('key_expired', { audit: { keyId: key.id, action: 'denied_expired' } });
  }

  if (key.allowlist !== null) {
    const address = view.clientAddress === null || view.clientAddress === undefined ? null : normaliseClientAddress(view.clientAddress);
    // Fail closed: a key with an allowlist is refused when the gateway could not say who is calling.
    if (address === null || !key.allowlist.contains(address)) {
      return deny('ip_not_allowed', { audit: { keyId: key.id, action: 'denied_ip' } });
    }
  }

  const pool = snapshot.pools.get(view.provider);
  if (pool === undefined) return deny('unknown_provider', { message: unknownProviderMessage(view.provider) });
  const queryCredential = credentialQueryParameterIn(firstValue(headers[':path']), pool.authStyle);
  if (queryCredential !== null) {
    return deny('invalid_request', {
      message: `keypool reads the API key from a header only: remove the "${queryCredential}" query parameter, which would reach the provider.`,
    });
  }

  return {
    kind: 'authorized',
    key,
    priority: resolvePriority(extracted.key, key, snapshot, nowMs),
    pool,
    credentialHeaders: credentialHeadersIn(headers, extracted.credentialHeaders),
  };
}

function resolvePriority(presentedKey: string, key: SystemKey, snapshot: Snapshot, nowMs: number): PriorityResolution {
  const settings = snapshot.prioritySettings;
  if (!settings.enabled) {
    return { priority: settings.defaultPriority, tenantId: key.tenantId, tenantName: null, mappingId: null };
  }
  const resolution = snapshot.priority.resolve(presentedKey, nowMs);
  // A key's own tenant wins: it was set for that one key, while a mapping's tenant is a default for every key its
  // pattern matches (a catch-all `kp_` mapping must not relabel keys issued with --tenant). The mapping's tenant name
  // describes the mapping's tenant, so it goes with it.
  if (key.tenantId === null || resolution.tenantId === key.tenantId) return resolution;
  return { ...resolution, tenantId: key.tenantId, tenantName: null };
}

function unknownProviderMessage(provider: unknown): string {
  const slug = typeof provider === 'string' ? provider.slice(0, MAX_ECHOED_PROVIDER) : '';
  return slug === ''
    ? 'This route names no provider, so there is no credential pool to use.'
    : `No credential pool is configured for provider "${slug}".`;
}

/**
 * The mutations for an admitted account: strip every client credential header (the key headers and every header a
 * provider reads as a credential, so neither the client key nor a client's own upstream key is forwarded; the
 * provider's own auth header in any case; and any client-sent x-keypool-* header),
 * then set the account's auth header, the priority and, when known, the tenant.
 */
export function buildAllow(auth: Authorized, account: Account): Allow {
  const upstreamAuth = authHeaderFor(auth.pool.authStyle, account.secret);
  const removeHeaders = [...auth.credentialHeaders];
  for (const name of [authHeaderName(auth.pool.authStyle), PRIORITY_HEADER, TENANT_HEADER]) {
    if (!removeHeaders.includes(name)) removeHeaders.push(name);
  }
  const tenant = headerSafe(auth.priority.tenantId);
  const setHeaders: Array<readonly [string, string]> = [upstreamAuth, [PRIORITY_HEADER, String(auth.priority.priority)]];
  if (tenant !== null) setHeaders.push([TENANT_HEADER, tenant]);
  return {
    kind: 'allow',
    keyId: auth.key.id,
    accountId: account.id,
    accountName: account.name,
    priority: auth.priority.priority,
    tenant,
    removeHeaders,
    setHeaders,
  };
}

// Envoy rejects a whole header mutation when one value holds CR, LF or NUL: a tenant id that somehow
// contains control characters is dropped rather than breaking the request.
function headerSafe(value: string | null): string | null {
  if (value === null || value.length === 0 || /[\u0000-\u001f\u007f]/.test(value)) return null;
  return value;
}

/**
 * The refusal when no account could be admitted: 429 pool_exhausted with retry-after until the earliest
 * account frees up, 429 priority_shed (capacity held back for higher priorities) with retry-after at the next reset,
 * 429 quota_exceeded naming the limit (key or tenant; requests or tokens; minute or day) with retry-after until its window frees, or 503
 * no_healthy_account (with retry-after when a circuit is known to half-open).
 */
export function denyForAdmission(
  reason: 'exhausted' | 'unhealthy' | 'shed' | 'quota',
  retryAtMs: number | null,
  nowMs: number,
  limit?: { readonly scope: QuotaScope; readonly window: QuotaWindow },
): Deny {
  const retryAfterSec = retryAfterSeconds(retryAtMs, nowMs);
  if (reason === 'exhausted') return deny('pool_exhausted', { retryAfterSec });
  if (reason === 'shed') return deny('priority_shed', { retryAfterSec });
  if (reason === 'quota') return deny('quota_exceeded', { retryAfterSec, message: QUOTA_MESSAGES[limit?.scope ?? 'key'][limit?.window ?? 'minute'] });
  return retryAtMs === null ? deny('no_healthy_account') : deny('no_healthy_account', { retryAfterSec });
}

/** Fixed texts (the hot path builds no strings): which limit refused, never whose. */
const QUOTA_MESSAGES: Readonly<Record<QuotaScope, Readonly<Record<QuotaWindow, string>>>> = {
  key: {
    minute: "This API key's requests-per-minute quota is used up. Retry later.",
    day: "This API key's requests-per-day quota is used up. Retry after the quota day ends.",
    token_minute: "This API key's tokens-per-minute quota is used up. Retry later.",
    token_day: "This API key's tokens-per-day quota is used up. Retry after the quota day ends.",
  },
  tenant: {
    minute: "This API key's tenant has used up its requests-per-minute quota. Retry later.",
    day: "This API key's tenant has used up its requests-per-day quota. Retry after the quota day ends.",
    token_minute: "This API key's tenant has used up its tokens-per-minute quota. Retry later.",
    token_day: "This API key's tenant has used up its tokens-per-day quota. Retry after the quota day ends.",
  },
};

function firstValue(value: string | readonly string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0];
}
