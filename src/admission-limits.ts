// What the engine adds to an account admission beyond the accounts: the request's quotas (its key's and its tenant's),
// the calendar day of the quota time zone, its priority reserve and its token estimate. Kept out of engine.ts so the
// engine only asks `limits.of(...)`. The day bounds are computed with Intl once per day (cached), not per request.
import type { Authorized } from './core/request.js';
import { countsTokens, DEFAULT_PRIORITY_RESERVE, reserveFor, zonedDayBounds } from './core/quota.js';
import { declaredBodyBytes, DEFAULT_OUTPUT_TOKENS, estimateRequestTokens } from './core/token-estimate.js';
import type { RequestView, Snapshot } from './core/types.js';
import { requestMayReportUsage } from './core/usage.js';
import type { DayBounds, QuotaRef, QuotaSubject } from './ports.js';

export interface RequestLimits {
  readonly quotas: readonly QuotaSubject[];
  readonly dayBounds: DayBounds | undefined;
  readonly reserve: number;
  /** The request's tenant when it is a tenant row (per-tenant metrics), else null. */
  readonly tenantRow: string | null;
  /**
   * Estimated tokens to reserve (AdmitRequest.tokens): 0 when no limit that counts tokens applies (no account of the
   * pool has a tpm_limit and neither quota has a token limit), so such requests cost exactly what they did before.
   */
  readonly tokens: number;
  /** The quotas with token limits the reservation is charged to (Ticket.tokenQuotas). */
  readonly tokenQuotas: readonly QuotaRef[];
}

const NO_QUOTAS: readonly QuotaSubject[] = Object.freeze([]);
const NO_REFS: readonly QuotaRef[] = Object.freeze([]);

/**
 * Does a request for `provider` need its body read for token accounting (exact TPM, token quotas)? True when an
 * account of the pool has a tpm_limit or any key or tenant has a token quota: the adapters read (bounded) bodies only
 * then. Both flags are compiled into the snapshot.
 */
export function needsBodyForTokens(snapshot: Snapshot, provider: string): boolean {
  const pool = snapshot.pools.get(provider);
  return pool?.countsTokens === true || snapshot.anyTokenQuota;
}

/**
 * Does this authorized request count tokens (its pool has an account with a tpm_limit, or its key or tenant has a
 * token quota)? Then its body is worth reading for the estimate (Engine.needsBody).
 */
export function requestCountsTokens(authorized: Authorized, snapshot: Snapshot): boolean {
  if (authorized.pool.countsTokens) return true;
  const keyQuota = authorized.key.quota ?? null;
  if (keyQuota !== null && countsTokens(keyQuota)) return true;
  const tenantId = authorized.priority.tenantId;
  const tenant = tenantId === null ? undefined : snapshot.tenants?.get(tenantId);
  return tenant !== undefined && countsTokens(tenant);
}

export class AdmissionLimits {
  private day: DayBounds | null = null;

  /** @param timeZone IANA zone of the quota day (KEYPOOL_QUOTA_TZ), validated by the config. */
  constructor(private readonly timeZone: string = 'UTC') {}

  /**
   * `view`: the request's headers (its method, its declared content-length) and body bytes, for the token estimate;
   * read only when a token limit applies. A request that cannot report usage (a GET: requestMayReportUsage) reserves
   * no tokens: nothing would ever reconcile them.
   */
  of(authorized: Authorized, snapshot: Snapshot, nowMs: number, view?: Pick<RequestView, 'headers' | 'body'>): RequestLimits {
    const keyQuota = authorized.key.quota ?? null;
    const tenantId = authorized.priority.tenantId;
    const tenant = tenantId === null ? undefined : snapshot.tenants?.get(tenantId);
    const tenantQuota = tenant !== undefined && (tenant.rpmLimit !== null || tenant.rpdLimit !== null || countsTokens(tenant)) ? tenant : null;
    const quotas = keyQuota === null ? (tenantQuota === null ? NO_QUOTAS : [tenantQuota]) : tenantQuota === null ? [keyQuota] : [keyQuota, tenantQuota];
    const settings = snapshot.prioritySettings;
    let tokenQuotas = NO_REFS;
    for (const quota of quotas) {
      // Only the names travel on the ticket (an adapter may carry it across a process boundary).
      if (countsTokens(quota)) tokenQuotas = [...tokenQuotas, { scope: quota.scope, id: quota.id }];
    }
    const counts = (tokenQuotas.length > 0 || authorized.pool.countsTokens) && (view === undefined || requestMayReportUsage(view.headers));
    return {
      quotas,
      dayBounds: quotas === NO_QUOTAS ? undefined : this.dayBounds(nowMs),
      reserve: settings.enabled ? reserveFor(settings.reserve ?? DEFAULT_PRIORITY_RESERVE, authorized.priority.priority) : 0,
      tenantRow: tenant === undefined ? null : tenant.id,
      tokens: counts
        ? estimateRequestTokens(view?.body?.bytes, settings.tokensDefaultOutput ?? DEFAULT_OUTPUT_TOKENS, declaredBodyBytes(view?.headers['content-length']))
        : 0,
      tokenQuotas,
    };
  }

  /** The quota days around nowMs (cached for the current day). */
  dayBounds(nowMs: number): DayBounds {
    const day = this.day;
    if (day !== null && nowMs >= day[1] && nowMs < day[2]) return day;
    const fresh = zonedDayBounds(nowMs, this.timeZone);
    this.day = fresh;
    return fresh;
  }
}
