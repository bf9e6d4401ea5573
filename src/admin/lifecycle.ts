// Key lifecycle sweep: counts active keys past their rotate_after_days (the keypool_keys_rotation_overdue gauge) and,
// when auto-revoke is on, revokes them (audited, actor `keypool`). With KEYPOOL_QUOTA_REPROBE_MS it also enables the
// accounts disabled as quota_exhausted that long ago (audited account_enabled, keypool_quota_reprobes_total), so the
// next request re-probes the credit. Runs on a timer on every replica; revoking and enabling are conditional updates
// in the repository, so replicas racing on the same key or account write one audit row.
import type { Logger } from '../log.js';
import type { AdminDeps } from './deps.js';
import type { SystemKeyRow } from '../catalog/keys/rows.js';

const DAY_MS = 86_400_000;
export const LIFECYCLE_ACTOR = 'keypool';

/** When a key falls due for rotation; null when it has no rotate_after_days. */
export function rotationDueAtMs(key: Pick<SystemKeyRow, 'rotateAfterDays' | 'lastRotatedAt' | 'createdAt'>): number | null {
  if (key.rotateAfterDays === null) return null;
  return (key.lastRotatedAt ?? key.createdAt).getTime() + key.rotateAfterDays * DAY_MS;
}

export function isRotationOverdue(key: Pick<SystemKeyRow, 'status' | 'rotateAfterDays' | 'lastRotatedAt' | 'createdAt'>, nowMs: number): boolean {
  const dueAtMs = rotationDueAtMs(key);
  return key.status === 'active' && dueAtMs !== null && dueAtMs <= nowMs;
}

export interface SweepResult {
  readonly overdue: readonly SystemKeyRow[];
  readonly revoked: readonly string[];
  /** Ids of the accounts enabled again to re-probe their credit. */
  readonly reprobed: readonly string[];
}

export class KeyLifecycle {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepResult | null> | undefined;

  constructor(
    private readonly deps: Pick<AdminDeps, 'repository' | 'metrics' | 'clock' | 'autoRevokeOverdue'> & Partial<Pick<AdminDeps, 'quotaReprobeMs'>>,
    private readonly logger: Logger,
  ) {}

  start(intervalMs: number): void {
    if (this.timer) return;
    void this.sweepSafely();
    this.timer = setInterval(() => void this.sweepSafely(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One sweep; concurrent callers share it. */
  sweep(): Promise<SweepResult> {
    return this.sweepOnce();
  }

  private sweepSafely(): Promise<SweepResult | null> {
    this.running ??= this.sweepOnce()
      .catch((error: unknown) => {
        this.logger.warn({ err: error }, 'key lifecycle sweep failed; retrying at the next interval');
        return null;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async sweepOnce(): Promise<SweepResult> {
    const nowMs = this.deps.clock.nowMs();
    const overdue = await this.deps.repository.keys.list({ dueForRotation: true, now: new Date(nowMs) });
    const revoked: string[] = [];
    if (this.deps.autoRevokeOverdue) {
      for (const key of overdue) {
        await this.deps.repository.keys.revoke(key.id, LIFECYCLE_ACTOR, 'rotation overdue (auto_revoke_overdue)');
        revoked.push(key.id);
        this.logger.warn({ keyId: key.id, name: key.name }, 'key revoked: rotation overdue');
      }
      this.deps.metrics.onAutoRevoked(revoked.length);
    }
    this.deps.metrics.setOverdueKeys(overdue.length - revoked.length);
    const reprobed = await this.reprobeQuotaExhausted(nowMs);
    return { overdue, revoked, reprobed };
  }

  private async reprobeQuotaExhausted(nowMs: number): Promise<readonly string[]> {
    const afterMs = this.deps.quotaReprobeMs ?? 0;
    if (afterMs <= 0) return [];
    const enabled = await this.deps.repository.accounts.enableQuotaExhausted(new Date(nowMs - afterMs), LIFECYCLE_ACTOR, afterMs);
    for (const account of enabled) {
      this.logger.info({ accountId: account.id, provider: account.providerSlug, account: account.name }, 'account enabled to re-probe its credit (quota_exhausted)');
    }
    this.deps.metrics.onQuotaReprobed(enabled.length);
    return enabled.map((account) => account.id);
  }
}
