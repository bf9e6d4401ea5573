// Everything the admin routes need, and a factory that builds it from the runtime's parts.
import type { Clock, RateStateStore } from '../ports.js';
import type { Keyring } from '../secrets/keyring.js';
import type { SqlClient } from '../stores/sql-client.js';
import { CONFIG_CHANNEL } from '../snapshot/holder.js';
import { DecisionActivity } from './activity.js';
import { HealthChecker, type HealthCheckOptions } from './health-check.js';
import { IdempotencyStore } from './idempotency.js';
import type { KeypoolMetrics, SnapshotStatus } from './metrics.js';
import { ConfigRepository } from '../catalog/repository.js';
import type { Engine } from '../engine.js';

/** The snapshot holder as the admin API sees it (src/snapshot/holder.ts SnapshotHolder fits). */
export interface AdminSnapshots extends SnapshotStatus {
  /** Reloads this replica's snapshot now; false when the load failed (the last good snapshot stays). */
  reload(): Promise<boolean>;
}

/** A repository bound to one open transaction. */
export interface AdminTx {
  readonly sql: SqlClient;
  readonly repository: ConfigRepository;
}

export interface AdminDeps {
  /** Reads and audited writes of the configuration (the same repository the CLI uses). */
  readonly repository: ConfigRepository;
  /** Runs fn in one database transaction (idempotent rotation: claim, rotate and remember commit together). */
  readonly transaction: <T>(fn: (tx: AdminTx) => Promise<T>) => Promise<T>;
  readonly idempotency: IdempotencyStore;
  readonly snapshots: AdminSnapshots;
  /** Live rate state: inspect (stats, metrics), resetAccount (enable), inspectQuota (tenant usage). */
  readonly state: Pick<RateStateStore, 'inspect' | 'resetAccount' | 'inspectQuota'>;
  /** IANA zone of the quota day (KEYPOOL_QUOTA_TZ). */
  readonly quotaTimeZone: string;
  /** Folds a health check's answer into the account's state, exactly as a proxied response (Engine.observeAccount). */
  readonly observeAccount: Engine['observeAccount'];
  readonly clock: Clock;
  readonly metrics: KeypoolMetrics;
  /**
   * Makes every replica reload its snapshot within 2 s (change feed), and reloads this one before resolving:
   * true when this replica's reload succeeded.
   */
  readonly requestReload: () => Promise<boolean>;
  readonly healthChecker: HealthChecker;
  /** The decrypted upstream key of an account, for check-health only; never logged or returned. */
  readonly accountSecret: (account: { readonly id: string; readonly keyLast4: string }) => Promise<string>;
  /** Revoke keys past rotate_after_days in the lifecycle sweep (KEYPOOL_AUTO_REVOKE_OVERDUE). */
  readonly autoRevokeOverdue: boolean;
  /** Enable accounts disabled as quota_exhausted this long after, in the lifecycle sweep (KEYPOOL_QUOTA_REPROBE_MS); 0 = never. */
  readonly quotaReprobeMs: number;
  /** This replica's recent decisions and last 429/401 per account (dashboard overview and pool view). */
  readonly activity: DecisionActivity;
}

export interface AdminDepsInput {
  readonly sql: SqlClient;
  readonly keyring: Keyring;
  readonly pepper: Uint8Array;
  readonly snapshots: AdminSnapshots;
  readonly state: Pick<RateStateStore, 'inspect' | 'resetAccount' | 'inspectQuota'>;
  /** IANA zone of the quota day (KEYPOOL_QUOTA_TZ); default UTC. */
  readonly quotaTimeZone?: string | undefined;
  /** The engine whose observeAccount the health check uses. */
  readonly engine: Pick<Engine, 'observeAccount'>;
  readonly clock: Clock;
  readonly metrics: KeypoolMetrics;
  /** Reuse the runtime's repository (else one is built on `sql`). */
  readonly repository?: ConfigRepository | undefined;
  readonly healthCheck?: HealthCheckOptions | undefined;
  readonly autoRevokeOverdue?: boolean | undefined;
  readonly quotaReprobeMs?: number | undefined;
  /** Fed by the engine's hooks (src/main.ts); a fresh, idle one when not given. */
  readonly activity?: DecisionActivity | undefined;
}

export function createAdminDeps(input: AdminDepsInput): AdminDeps {
  const secrets = { keyring: input.keyring, pepper: input.pepper };
  const repository = input.repository ?? new ConfigRepository(input.sql, secrets);
  return {
    repository,
    transaction: (fn) => input.sql.transaction((tx) => fn({ sql: tx, repository: new ConfigRepository(tx, secrets) })),
    idempotency: new IdempotencyStore(input.keyring),
    snapshots: input.snapshots,
    state: input.state,
    quotaTimeZone: input.quotaTimeZone ?? 'UTC',
    clock: input.clock,
    metrics: input.metrics,
    requestReload: async () => {
      await broadcastReload(input.sql);
      return input.snapshots.reload();
    },
    healthChecker: new HealthChecker(input.healthCheck),
    accountSecret: (account) => accountSecretFrom(input.snapshots, repository, input.keyring, account),
    autoRevokeOverdue: input.autoRevokeOverdue ?? false,
    quotaReprobeMs: input.quotaReprobeMs ?? 0,
    observeAccount: (...args) => input.engine.observeAccount(...args),
    activity: input.activity ?? new DecisionActivity(input.clock),
  };
}

/**
 * Wakes every snapshot holder: bumps config_version (holders that poll it see a change) and NOTIFYs the change
 * feed (holders that LISTEN reload at once), in one transaction so both land together.
 */
export async function broadcastReload(sql: SqlClient): Promise<void> {
  await sql.transaction(async (tx) => {
    await tx.query('UPDATE config_version SET version = version + 1, changed_at = now() WHERE id = 1');
    await tx.query('SELECT pg_notify($1, $2)', [CONFIG_CHANNEL, 'admin_reload']);
  });
}

/**
 * Active accounts' secrets are already decrypted in the snapshot; a disabled or invalid one (the usual reason to
 * probe it), or one whose key changed since the last reload, is read from the store and decrypted here.
 */
async function accountSecretFrom(
  snapshots: AdminSnapshots,
  repository: ConfigRepository,
  keyring: Keyring,
  row: { readonly id: string; readonly keyLast4: string },
): Promise<string> {
  const accountId = row.id;
  for (const pool of snapshots.current()?.pools.values() ?? []) {
    const account = pool.accounts.find((a) => a.id === accountId);
    // A key changed since the snapshot was compiled shows a different last 4: then read the stored one.
    if (account && (row.keyLast4 === '' || account.secret.endsWith(row.keyLast4))) return account.secret;
  }
  const data = await repository.loadConfigData();
  const stored = data.accounts.find((a) => a.id === accountId);
  if (!stored) throw new Error(`account ${accountId} has no stored secret`);
  return keyring.decrypt({ ciphertext: stored.encryptedKey, keyVersion: stored.keyVersion }, accountId);
}
