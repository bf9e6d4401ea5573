// JSON views of the store's rows, field by field (snake_case). Listing fields explicitly (never spreading a row)
// keeps anything secret-bearing that a row type may gain later out of responses by default.
import { settingsByName } from '../catalog/settings/schema.js';
import type { PrioritySettings } from '../core/types.js';
import type { AccountStateView } from '../ports.js';
import { isRotationOverdue, rotationDueAtMs } from './lifecycle.js';
import type { AccountRow } from '../catalog/accounts/rows.js';
import type { AuditRow } from '../catalog/audit/rows.js';
import type { SystemKeyRow } from '../catalog/keys/rows.js';
import type { MappingRow } from '../catalog/mappings/rows.js';
import type { ProviderRow } from '../catalog/providers/rows.js';
import type { TenantRow } from '../catalog/tenants/rows.js';
import type { PriceRow } from '../catalog/prices/rows.js';
import type { UsageBucket } from '../catalog/usage/rows.js';

const iso = (date: Date | null): string | null => (date === null ? null : date.toISOString());
const isoMs = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function presentProvider(row: ProviderRow): Record<string, unknown> {
  return {
    id: row.id,
    slug: row.slug,
    display_name: row.displayName,
    auth_style: row.authStyle,
    rate_limit_dialect: row.rateLimitDialect,
    default_strategy: row.defaultStrategy,
    per_model_state: row.perModelState,
  };
}

/** The upstream key is write-only: only its last 4 characters are ever shown. */
export function presentAccount(row: AccountRow): Record<string, unknown> {
  return {
    id: row.id,
    provider: row.providerSlug,
    name: row.name,
    key_last4: row.keyLast4,
    key_version: row.keyVersion,
    weight: row.weight,
    tier: row.tier,
    rpm_limit: row.rpmLimit,
    tpm_limit: row.tpmLimit,
    max_concurrency: row.maxConcurrency,
    status: row.status,
    disabled_reason: row.disabledReason,
    tags: row.tags,
    models: row.models,
    scope: row.scope,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

/** A system key: never the key, only its display prefix. */
export function presentKey(row: SystemKeyRow, nowMs: number): Record<string, unknown> {
  return {
    id: row.id,
    name: row.name,
    tenant_id: row.tenantId,
    key_prefix: row.keyPrefix,
    status: row.status,
    expires_at: iso(row.expiresAt),
    allowed_ips: row.allowedIps,
    rotate_after_days: row.rotateAfterDays,
    rpm_limit: row.rpmLimit,
    rpd_limit: row.rpdLimit,
    tpm_limit: row.tpmLimit ?? null,
    tpd_limit: row.tpdLimit ?? null,
    last_rotated_at: iso(row.lastRotatedAt),
    rotation_due_at: isoMs(rotationDueAtMs(row)),
    rotation_overdue: isRotationOverdue(row, nowMs),
    previous_key_expires_at: iso(row.previousKeyExpiresAt),
    last_used_at: iso(row.lastUsedAt),
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

export function presentTenant(row: TenantRow): Record<string, unknown> {
  return {
    id: row.id,
    name: row.name,
    rpm_limit: row.rpmLimit,
    rpd_limit: row.rpdLimit,
    tpm_limit: row.tpmLimit ?? null,
    tpd_limit: row.tpdLimit ?? null,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

export function presentMapping(row: MappingRow): Record<string, unknown> {
  return {
    id: row.id,
    pattern: row.pattern,
    match_type: row.matchType,
    priority: row.priority,
    tenant_id: row.tenantId,
    tenant_name: row.tenantName,
    tenant_type: row.tenantType,
    description: row.description,
    enabled: row.enabled,
    window: row.window,
    created_at: iso(row.createdAt),
  };
}

export function presentAudit(row: AuditRow): Record<string, unknown> {
  return {
    id: row.id,
    key_id: row.keyId,
    action: row.action,
    actor: row.actor,
    client_ip: row.clientIp,
    metadata: row.metadata,
    occurrences: row.occurrences,
    created_at: iso(row.createdAt),
  };
}

export function presentSettings(settings: PrioritySettings): Record<string, unknown> {
  return settingsByName(settings);
}

export function presentUsageBucket(bucket: UsageBucket): Record<string, unknown> {
  return {
    bucket_start: iso(bucket.bucketStart),
    requests: bucket.requests,
    successes: bucket.successes,
    rate_limited: bucket.rateLimited,
    client_errors: bucket.clientErrors,
    server_errors: bucket.serverErrors,
    input_tokens: bucket.inputTokens,
    output_tokens: bucket.outputTokens,
    cached_input_tokens: bucket.cachedInputTokens,
    cache_creation_input_tokens: bucket.cacheCreationInputTokens,
    latency_ms_sum: bucket.latencyMsSum,
  };
}

export function usageTotals(buckets: readonly UsageBucket[]): Record<string, number> {
  const sum = (pick: (b: UsageBucket) => number) => buckets.reduce((total, b) => total + pick(b), 0);
  const requests = sum((b) => b.requests);
  const latency = sum((b) => b.latencyMsSum);
  return {
    requests,
    successes: sum((b) => b.successes),
    rate_limited: sum((b) => b.rateLimited),
    client_errors: sum((b) => b.clientErrors),
    server_errors: sum((b) => b.serverErrors),
    input_tokens: sum((b) => b.inputTokens),
    output_tokens: sum((b) => b.outputTokens),
    cached_input_tokens: sum((b) => b.cachedInputTokens),
    cache_creation_input_tokens: sum((b) => b.cacheCreationInputTokens),
    latency_ms_avg: requests === 0 ? 0 : Math.round((latency / requests) * 10) / 10,
  };
}

/** Live rate state of one account; null fields mean "not reported / not known". */
export function presentLiveState(view: AccountStateView | undefined, nowMs: number): Record<string, unknown> | null {
  if (!view) return null;
  const secondsLeft = (untilMs: number | null) => (untilMs === null || untilMs <= nowMs ? 0 : Math.ceil((untilMs - nowMs) / 1000));
  return {
    health: view.health,
    invalid: view.invalid,
    in_flight: view.inFlight,
    requests_in_window: view.requestsInWindow,
    cooldown_until: view.cooldownUntilMs !== null && view.cooldownUntilMs > nowMs ? isoMs(view.cooldownUntilMs) : null,
    cooldown_seconds_left: secondsLeft(view.cooldownUntilMs),
    circuit_open_until: view.circuitOpenUntilMs !== null && view.circuitOpenUntilMs > nowMs ? isoMs(view.circuitOpenUntilMs) : null,
    remaining_requests: view.learned.requestsRemaining,
    remaining_tokens: view.learned.tokensRemaining,
    limit_requests: view.learned.requestsLimit,
    limit_tokens: view.learned.tokensLimit,
    requests_reset_at: isoMs(view.learned.requestsResetAtMs),
    tokens_reset_at: isoMs(view.learned.tokensResetAtMs),
  };
}

/** A token price as the admin API and the CLI show it (USD per million tokens; null = the input price). */
export function presentPrice(row: PriceRow): Record<string, unknown> {
  return {
    provider: row.providerSlug,
    model: row.model,
    input: row.inputUsdPerMTok,
    output: row.outputUsdPerMTok,
    cached_input: row.cachedInputUsdPerMTok,
    cache_creation: row.cacheCreationUsdPerMTok,
    updated_at: row.updatedAt.toISOString(),
  };
}
