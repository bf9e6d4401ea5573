// What the engine adds to an account admission beyond the accounts: the request's quotas (its key's and its tenant's),
// the calendar day of the quota time zone, and its priority reserve. Kept out of engine.ts so the engine only asks
// `limits.of(...)`. The day bounds are computed with Intl once per day (cached), not per request.
import type { Authorized } from './core/request.js';
import { DEFAULT_PRIORITY_RESERVE, reserveFor, zonedDayBounds } from './core/quota.js';
import type { Snapshot } from './core/types.js';
import type { DayBounds, QuotaSubject } from './ports.js';

export interface RequestLimits {
  readonly quotas: readonly QuotaSubject[];
  readonly dayBounds: DayBounds | undefined;
  readonly reserve: number;
  /** The request's tenant when it is a tenant row (per-tenant metrics), else null. */
  readonly tenantRow: string | null;
}

const NO_QUOTAS: readonly QuotaSubject[] = Object.freeze([]);

export class AdmissionLimits {
  private day: DayBounds | null = null;

  /** @param timeZone IANA zone of the quota day (KEYPOOL_QUOTA_TZ), validated by the config. */
  constructor(private readonly timeZone: string = 'UTC') {}

  of(authorized: Authorized, snapshot: Snapshot, nowMs: number): RequestLimits {
    const keyQuota = authorized.key.quota ?? null;
    const tenantId = authorized.priority.tenantId;
    const tenant = tenantId === null ? undefined : snapshot.tenants?.get(tenantId);
    const tenantQuota = tenant !== undefined && (tenant.rpmLimit !== null || tenant.rpdLimit !== null) ? tenant : null;
    const quotas = keyQuota === null ? (tenantQuota === null ? NO_QUOTAS : [tenantQuota]) : tenantQuota === null ? [keyQuota] : [keyQuota, tenantQuota];
    const settings = snapshot.prioritySettings;
    return {
      quotas,
      dayBounds: quotas === NO_QUOTAS ? undefined : this.dayBounds(nowMs),
      reserve: settings.enabled ? reserveFor(settings.reserve ?? DEFAULT_PRIORITY_RESERVE, authorized.priority.priority) : 0,
      tenantRow: tenant === undefined ? null : tenant.id,
    };
  }

  private dayBounds(nowMs: number): DayBounds {
    const day = this.day;
    if (day !== null && nowMs >= day[1] && nowMs < day[2]) return day;
    const fresh = zonedDayBounds(nowMs, this.timeZone);
    this.day = fresh;
    return fresh;
  }
}
