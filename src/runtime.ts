// Composition of everything below the gateway adapters: catalog (SQL), compiled snapshot, rate state, buffered
// writes and the engine. `keypool serve` (src/main.ts) and the Kong plugin both build exactly this.
import { Engine, type EngineOptions } from './engine.js';
import { ConfigError, loadConfig, type KeypoolConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { systemClock, type Clock, type HealthChange, type RateStateStore } from './ports.js';
import { loadSecrets } from './secrets/bootstrap.js';
import { openStore, type OpenedStore } from './stores/open-store.js';
import { migrate } from './stores/migrate.js';
import { MemoryRateStateStore } from './stores/memory-state.js';
import { RedisRateStateStore } from './stores/redis-state.js';
import { ResilientRateStateStore } from './stores/resilient-state.js';
import { WriteBuffer } from './stores/write-buffer.js';
import { pruneOlderThan } from './stores/retention.js';
import { SnapshotHolder } from './snapshot/holder.js';
import { seedDemoOnFirstStart } from './demo-seed.js';
import { ConfigRepository, type RepositorySecrets } from './catalog/repository.js';
import { startTracing } from './telemetry/tracing.js';
import type { Snapshot } from './core/types.js';

/** Longest the last flush of buffered writes may take at shutdown (a partitioned database answers nothing). */
const FINAL_FLUSH_TIMEOUT_MS = 5_000;
/** How often automatic retention runs (KEYPOOL_RETENTION_DAYS > 0); the first run is right after start. */
const RETENTION_INTERVAL_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Longest any one shutdown step may take (the last flush has its own, shorter bound), so a stop always ends. */
const SHUTDOWN_STEP_TIMEOUT_MS = 6_000;

export interface RuntimeOptions {
  /** Overrides of the environment-derived configuration. */
  readonly config?: Partial<KeypoolConfig>;
  /** 'owner' serves an embedded database to local CLI processes (keypool serve); 'client' uses a live owner's. */
  readonly storeRole?: 'owner' | 'client';
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Observes every decision (metrics). */
  readonly onDecision?: EngineOptions['onDecision'];
  readonly onAdmission?: EngineOptions['onAdmission'];
  /** Observes what each upstream response said about its account (metrics). */
  readonly onObservation?: EngineOptions['onObservation'];
  /** Observes the admission queue (metrics). */
  readonly onQueue?: EngineOptions['onQueue'];
  /** Observes each response's token usage (metrics). */
  readonly onTokens?: EngineOptions['onTokens'];
  /**
   * Refuse to start (ConfigError) unless the store was configured: DATABASE_URL postgres:// or an explicit
   * KEYPOOL_DATA_DIR. The Kong plugin sets it: there the defaults would open a throwaway embedded store in the
   * nginx worker's cwd and answer every valid key 401.
   */
  readonly requireConfiguredStore?: boolean;
}

export interface Runtime {
  readonly config: KeypoolConfig;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly store: OpenedStore;
  /** Key ring and pepper (the admin API encrypts idempotent replies and decrypts keys for health probes). */
  readonly secrets: RepositorySecrets;
  readonly repository: ConfigRepository;
  readonly snapshots: SnapshotHolder;
  readonly state: RateStateStore;
  /** Present when REDIS_URL is set: breaker state and mode for metrics. */
  readonly sharedState: ResilientRateStateStore | null;
  readonly writes: WriteBuffer;
  /** The DecisionEngine adapters call, with its counters for metrics. */
  readonly engine: Engine;
  stop(): Promise<void>;
}

export async function openRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const config = loadConfig(options.config);
  if (options.requireConfiguredStore) checkStoreConfigured(config);
  // Before the logger: its lines carry the active trace id. Null (and no SDK loaded) unless OTEL_* asks for traces.
  const tracing = config.tracing === null ? null : await startTracing(config.tracing);
  const logger = options.logger ?? createLogger(config.logLevel, undefined, tracing?.logMixin);
  const clock = options.clock ?? systemClock;
  const cleanups: Array<() => Promise<void>> = [];
  // First in, last out: spans of the drain are exported too.
  if (tracing !== null) cleanups.push(() => tracing.shutdown());
  const stopAll = async () => {
    for (const cleanup of cleanups.reverse()) {
      await withinDeadline(cleanup(), SHUTDOWN_STEP_TIMEOUT_MS).catch((error) => logger.error({ err: error }, 'shutdown step failed'));
    }
  };
  try {
    const secrets = await loadSecrets({
      encryptionKeys: config.encryptionKeys,
      keyPepper: config.keyPepper,
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
    });
    if (secrets.warning) logger.warn({ file: secrets.file }, secrets.warning);

    const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, role: options.storeRole ?? 'client' });
    cleanups.push(() => store.client.close());
    if (store.share) cleanups.push(() => store.share!.close());
    logger.info({ store: store.where, mode: store.mode }, 'config store opened');

    if (config.migrateOnStart) {
      const result = await migrate(store.client);
      if (result.applied.length > 0) logger.info({ applied: result.applied }, 'migrations applied');
    }
    const repository = new ConfigRepository(store.client, { keyring: secrets.keyring, pepper: secrets.pepper });
    if (config.demoSeed && store.mode !== 'postgres') {
      const seeded = await seedDemoOnFirstStart(repository, store.client);
      if (seeded) logger.info(seeded, 'first start: demo accounts (fake upstream keys) and priority mappings seeded');
    }

    // Set once the rate state exists (the first snapshot loads before it): see accountActivationResetter.
    let onSnapshot: ((snapshot: Snapshot | null) => void) | null = null;
    const snapshots = new SnapshotHolder({
      source: repository,
      feed: store.client,
      deps: { pepper: secrets.pepper, keyring: secrets.keyring },
      clock,
      reloadIntervalMs: config.reloadIntervalMs,
      onReload: (info) => {
        for (const warning of info.warnings) logger.warn({ warning }, 'snapshot compiled with a warning');
        logger.debug({ version: info.version, durationMs: info.durationMs, reason: info.reason }, 'snapshot reloaded');
        onSnapshot?.(snapshots.current());
      },
      onError: (error, reason) => logger.error({ err: error, reason }, 'snapshot reload failed; keeping the last good one'),
    });
    await snapshots.start();
    cleanups.push(() => snapshots.stop());

    const { state, sharedState } = openRateState(config, logger, healthChangeLogger(logger, snapshots));
    cleanups.push(() => state.close());
    onSnapshot = accountActivationResetter(state, logger, snapshots.current());

    const writes = new WriteBuffer({
      target: repository,
      maxPending: config.writeBufferMax,
      flushIntervalMs: config.flushIntervalMs,
      onFlushError: (error) => logger.warn({ err: error, pending: writes.pending }, 'database write failed; will retry'),
      onDrop: (_now, total) => {
        // Log the first drop and then every thousandth, so an outage does not flood the log.
        if (total === 1 || total % 1000 === 0) logger.error({ droppedTotal: total }, 'write buffer full: dropping durable writes');
      },
      // Never the row itself (it may carry client input): its kind and the database's reason. Throttled like drops.
      onRejected: ({ kind, sqlState, rejectedTotal }) => {
        if (rejectedTotal === 1 || rejectedTotal % 1000 === 0) {
          logger.error({ kind, sqlState, rejectedTotal }, 'the database refused a durable write; dropped it and wrote the rest of its batch');
        }
      },
    });
    writes.start();
    cleanups.push(async () => {
      if (!(await writes.stop(FINAL_FLUSH_TIMEOUT_MS))) {
        // Never silent: what the database did not take before exit is lost.
        logger.error({ pending: writes.pending }, 'stopping with durable writes (audit, usage, key touches) the database did not take');
      }
    });

    if (config.retentionDays > 0) {
      const prune = (): void => {
        const before = new Date(clock.nowMs() - config.retentionDays * DAY_MS);
        pruneOlderThan(repository, before, 'keypool').then(
          (result) => logger.info({ ...result, retentionDays: config.retentionDays }, 'retention: pruned audit rows and usage stats'),
          (error: unknown) => logger.warn({ err: error }, 'retention: pruning failed; will retry'),
        );
      };
      const first = setTimeout(prune, 0);
      const every = setInterval(prune, RETENTION_INTERVAL_MS);
      first.unref();
      every.unref();
      cleanups.push(async () => {
        clearTimeout(first);
        clearInterval(every);
      });
    }

    const engine = new Engine({
      snapshots,
      state,
      writes,
      clock,
      logger,
      keyHeaders: config.keyHeaders,
      leaseMs: config.leaseMs,
      defaultCooldownMs: config.defaultCooldownMs,
      stateTimeoutMs: config.stateTimeoutMs,
      onDecision: options.onDecision,
      onAdmission: options.onAdmission,
      quotaTimeZone: config.quotaTimeZone,
      onObservation: tracing === null ? options.onObservation : both(options.onObservation, tracing.onObservation),
      ...(options.onQueue ? { onQueue: options.onQueue } : {}),
      ...(options.onTokens ? { onTokens: options.onTokens } : {}),
    });

    const repositorySecrets = { keyring: secrets.keyring, pepper: secrets.pepper };
    return {
      config,
      logger,
      clock,
      store,
      secrets: repositorySecrets,
      repository,
      snapshots,
      state,
      sharedState,
      writes,
      engine: tracing === null ? engine : tracing.wrap(engine),
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

function checkStoreConfigured(config: KeypoolConfig): void {
  if (config.databaseUrl !== undefined && /^postgres(ql)?:\/\//i.test(config.databaseUrl)) return;
  if (config.databaseUrl === undefined && config.dataDirConfigured) return;
  throw new ConfigError(
    'DATABASE_URL',
    'no configured config store: set DATABASE_URL=postgres://… (or KEYPOOL_DATA_DIR to the embedded store of a running ' +
      '`keypool serve`) in the keypool env file (KEYPOOL_ENV_FILE); a throwaway store would know no keys',
  );
}

function openRateState(
  config: KeypoolConfig,
  logger: Logger,
  onHealthChange: (change: HealthChange) => void,
): { state: RateStateStore; sharedState: ResilientRateStateStore | null } {
  if (!config.redisUrl) return { state: new MemoryRateStateStore({ onHealthChange }), sharedState: null };
  const redis = RedisRateStateStore.connect(config.redisUrl, {
    keyPrefix: config.redisKeyPrefix,
    onHealthChange,
    onBackgroundError: (error) => logger.debug({ err: error }, 'redis background write failed'),
  });
  const sharedState = new ResilientRateStateStore(redis, {
    failureMode: config.stateFailureMode,
    expectedReplicas: config.expectedReplicas,
    timeoutMs: config.stateTimeoutMs,
    onHealthChange,
    onTransition: (transition) => {
      if (transition.available) logger.info({ mode: transition.mode }, 'shared rate state is back');
      else logger.error({ mode: transition.mode, failureMode: transition.failureMode, cause: String(transition.cause ?? '') }, 'shared rate state lost');
    },
  });
  return { state: sharedState, sharedState };
}

/**
 * Watches snapshots for accounts that (re)enter a pool: an operator enabled them (admin API, CLI, SQL) or created
 * them. Their live state is reset on this replica (its local fallback) and in the shared state: a cooldown, an open
 * circuit or a learned "0 remaining until tomorrow" from before must not keep an enabled account parked. Every replica
 * sees the same snapshots, so every replica resets its own copy, whichever way the account was enabled.
 */
function accountActivationResetter(state: RateStateStore, logger: Logger, initial: Snapshot | null): (snapshot: Snapshot | null) => void {
  let active = activeAccounts(initial);
  return (snapshot) => {
    if (snapshot === null) return;
    const now = activeAccounts(snapshot);
    for (const [accountId, pool] of now) {
      if (active.has(accountId)) continue;
      state.resetAccount?.(pool, accountId).catch((error: unknown) => {
        logger.warn({ err: error, pool, accountId }, 'could not reset the live state of a re-enabled account');
      });
    }
    active = now;
  };
}

/** Active account id -> pool slug. */
function activeAccounts(snapshot: Snapshot | null): Map<string, string> {
  const active = new Map<string, string>();
  for (const pool of snapshot?.pools.values() ?? []) for (const account of pool.accounts) active.set(account.id, pool.slug);
  return active;
}

/** One log line per account health change, naming the account (never its key). */
function healthChangeLogger(logger: Logger, snapshots: SnapshotHolder): (change: HealthChange) => void {
  return ({ pool, accountId, from, to }) => {
    const account = snapshots.current()?.pools.get(pool)?.accounts.find((candidate) => candidate.id === accountId)?.name;
    const fields = { pool, accountId, account, from, to };
    if (to === 'unhealthy') logger.warn(fields, 'account circuit opened after repeated upstream errors');
    else if (from === 'unhealthy') logger.info(fields, 'account circuit closed');
    else logger.info(fields, 'account health changed');
  };
}

function both<A extends unknown[]>(first: ((...args: A) => void) | undefined, second: (...args: A) => void): (...args: A) => void {
  return first === undefined ? second : (...args) => {
    first(...args);
    second(...args);
  };
}

function withinDeadline(step: Promise<void>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not finish within ${timeoutMs} ms; continuing`)), timeoutMs);
    step.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
