// Rate state shared by every replica through Redis. admit() is one round trip (EVALSHA of ADMIT_LUA); observe() is
// one EVALSHA that also carries the release of a finished request (so a request costs two commands); release() and
// renew() are fire-and-forget commands that ioredis pipelines with whatever else is in flight.
// The rules are src/core/capacity.ts's; the scripts in ./redis-scripts.ts mirror them (see the key layout there).
import { createHash, randomBytes } from 'node:crypto';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { LearnedLimits, Observation } from '../core/types.js';
import { pickDay, utcDayBounds } from '../core/quota.js';
import { learnedKeySuffix, learnedSlot, MODEL_SLOT_MIN_TTL_MS } from '../core/learned-state.js';
import type {
  AccountStateView,
  AdmitRequest,
  AdmitResult,
  DayBounds,
  HealthChange,
  HealthState,
  LearnedTarget,
  QuotaRef,
  QuotaSubject,
  QuotaUsage,
  RateStateStore,
} from '../ports.js';
import { createRedisClient } from './redis-connection.js';
import {
  ADMIT_LUA,
  INSPECT_LUA,
  OBSERVE_LUA,
  QUOTA_INSPECT_LUA,
  QUOTA_REFUND_LUA,
  QUOTA_RESERVE_LUA,
  RECONCILE_LUA,
  RENEW_LUA,
  RESET_FIELDS,
} from './redis-scripts.js';
import { accountKeys, escapeTag, QUOTA_KEYS, quotaKeysInto, reconcileCalls, type AccountKeys } from './redis-keys.js';
import { reservedTokens } from '../core/token-window.js';
import { admitReservingQuotas, type QuotaRunner } from './redis-quota-admit.js';
import { accountViewsOf, admitResultOf } from './redis-replies.js';

export interface RedisRateStateStoreOptions {
  /** Prepended to every key (before the `{kp:<pool>}` hash tag). Default ''. Tests use a random one. */
  readonly keyPrefix?: string;
  /** Idle lifetime of an account's state hash, refreshed on every write. Default 24 h. */
  readonly stateTtlMs?: number;
  /** Prefix of lease ids; unique per process by default (random). */
  readonly instanceId?: string;
  /** Called (never throws) when a fire-and-forget command or a connection fails; for a throttled log or a metric. */
  readonly onBackgroundError?: (error: unknown) => void;
  /** Called when an observation moved an account's shared health (circuit opened or closed). Must not throw. */
  readonly onHealthChange?: (change: HealthChange) => void;
  /**
   * TEST ONLY. Run the scripts on the caller's nowMs instead of Redis TIME, so the contract suite can drive time.
   * Production never sets it: with it, replicas' clocks would matter again.
   */
  readonly testUseRequestClock?: boolean;
}

/** ioredis settings that suit the request path: fail fast instead of queueing while disconnected, reconnect forever. */
export const REDIS_CLIENT_DEFAULTS: RedisOptions = {
  // A command issued while disconnected fails at once (the resilient wrapper falls back) instead of waiting unbounded.
  enableOfflineQueue: false,
  // A command caught by a dropped connection fails at once too (never re-sent after the caller gave up on it).
  maxRetriesPerRequest: 0,
  connectTimeout: 2_000,
  // Batches the commands issued in one tick (admits, releases, observations) into one write.
  enableAutoPipelining: true,
  retryStrategy: (times: number) => Math.min(50 * times, 1_000),
};

const DEFAULT_STATE_TTL_MS = 24 * 3_600_000;
/** Cached key triples; cleared wholesale when exceeded (bounded like every cache). */
const KEY_CACHE_MAX = 100_000;
/**
 * Releases that failed (Redis unreachable) are retried on reconnect, so slots taken before an outage come back when
 * Redis does instead of after leaseMs. Beyond this many the oldest are dropped (counted): their leases still expire.
 */
const PENDING_RELEASES_MAX = 10_000;

interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

const ADMIT = script(ADMIT_LUA);
const OBSERVE = script(OBSERVE_LUA);
const INSPECT = script(INSPECT_LUA);
const RENEW = script(RENEW_LUA);
const QUOTA_RESERVE = script(QUOTA_RESERVE_LUA);
const QUOTA_REFUND = script(QUOTA_REFUND_LUA);
const QUOTA_INSPECT = script(QUOTA_INSPECT_LUA);
const RECONCILE = script(RECONCILE_LUA);
const NO_QUOTAS: readonly QuotaSubject[] = [];

const noop = (): void => undefined;

function str(n: number | null): string {
  return n === null ? '' : String(n);
}

export class RedisRateStateStore implements RateStateStore {
  private readonly redis: Redis | Cluster;
  private readonly ownsClient: boolean;
  private readonly keyPrefix: string;
  private readonly stateTtlMs: number;
  private readonly instanceId: string;
  private readonly onBackgroundError: ((error: unknown) => void) | undefined;
  private readonly onHealthChange: ((change: HealthChange) => void) | undefined;
  private readonly testClock: boolean;
  private readonly keyCache = new Map<string, Map<string, AccountKeys>>();
  private keyCacheSize = 0;
  private leaseSeq = 0;
  private errors = 0;
  private pendingReleases: Array<readonly [key: string, leaseId: string]> = [];
  private droppedReleases = 0;
  private readonly onReady = (): void => {
    this.loadScripts();
    this.retryReleases();
  };
  private readonly onError = (error: unknown): void => this.backgroundError(error);
  private readonly quotaRunner: QuotaRunner = {
    keyPrefix: '',
    testClock: false,
    run: (lua, sha, keys, args) => this.run({ lua, sha }, keys, args),
    backgroundError: (error) => this.backgroundError(error),
  };

  /**
   * Wraps an ioredis client (created with REDIS_CLIENT_DEFAULTS, see `RedisRateStateStore.connect`), or a Cluster:
   * every script touches only keys of one pool, which share a hash tag. The store closes the client on close() only
   * when `ownsClient` is true.
   */
  constructor(redis: Redis | Cluster, options: RedisRateStateStoreOptions = {}, ownsClient = false) {
    this.redis = redis;
    this.ownsClient = ownsClient;
    this.keyPrefix = options.keyPrefix ?? '';
    this.stateTtlMs = options.stateTtlMs ?? DEFAULT_STATE_TTL_MS;
    this.instanceId = options.instanceId ?? randomBytes(6).toString('base64url');
    this.onBackgroundError = options.onBackgroundError;
    this.onHealthChange = options.onHealthChange;
    this.testClock = options.testUseRequestClock === true;
    this.quotaRunner = { ...this.quotaRunner, keyPrefix: this.keyPrefix, testClock: this.testClock };
    // A restarted Redis has an empty script cache: load on every (re)connect so EVALSHA rarely misses.
    redis.on('ready', this.onReady);
    // Without a listener ioredis prints every connection error; count and hand them to the caller instead.
    redis.on('error', this.onError);
    if (redis.status === 'ready') this.loadScripts();
  }

  /**
   * Creates a client for `url` (one server or a cluster, see ./redis-connection.ts) with REDIS_CLIENT_DEFAULTS (plus
   * `clientOptions`) and a store owning it.
   */
  static connect(url: string, options: RedisRateStateStoreOptions = {}, clientOptions: RedisOptions = {}): RedisRateStateStore {
    const redis = createRedisClient(url, { ...REDIS_CLIENT_DEFAULTS, ...clientOptions });
    return new RedisRateStateStore(redis, options, true);
  }

  /** Resolves once the connection is ready, rejects after timeoutMs (the caller may still proceed: it reconnects). */
  ready(timeoutMs: number): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`redis not ready after ${timeoutMs} ms`));
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }

  /** Connection status as ioredis reports it ('ready' when usable). */
  get status(): string {
    return this.redis.status;
  }

  /** Failed fire-and-forget commands and connection errors since start. */
  get backgroundErrors(): number {
    return this.errors;
  }

  /** Releases waiting for Redis to come back, and releases given up (the bound was exceeded; their leases expire). */
  get releaseBacklog(): { readonly pending: number; readonly dropped: number } {
    return { pending: this.pendingReleases.length, dropped: this.droppedReleases };
  }

  admit(request: AdmitRequest): Promise<AdmitResult> {
    if (request.candidates.length === 0) return Promise.resolve({ ok: false, reason: 'unhealthy', retryAtMs: null });
    const leaseId = `${this.instanceId}.${(++this.leaseSeq).toString(36)}`;
    const quotas = request.quotas ?? NO_QUOTAS;
    const bounds = quotas.length === 0 ? null : (request.dayBounds ?? utcDayBounds(request.nowMs));
    // A Cluster cannot run one script over a quota's slot and the pool's: reserve the quotas first (see redis-scripts.ts).
    if (this.redis.isCluster && bounds !== null) {
      return admitReservingQuotas(this.quotaRunner, request, quotas, bounds, leaseId, (inner) => this.admitAs(inner, NO_QUOTAS, null, leaseId));
    }
    return this.admitAs(request, quotas, bounds, leaseId);
  }

  /** One ADMIT_LUA call under `leaseId` (the quotas' reservations on a Cluster use the same id: reconcile finds both). */
  private async admitAs(request: AdmitRequest, quotas: readonly QuotaSubject[], bounds: DayBounds | null, leaseId: string): Promise<AdmitResult> {
    const candidates = request.candidates;
    const nq = bounds === null ? 0 : quotas.length;
    const keys: string[] = new Array<string>(nq * QUOTA_KEYS + candidates.length * 6);
    const ao = 12 + nq * 4;
    const args: string[] = new Array<string>(ao + candidates.length * 4);
    args[0] = leaseId;
    args[1] = String(request.leaseMs);
    args[2] = request.leastLoaded ? '1' : '0';
    args[3] = this.testClock ? String(request.nowMs) : '';
    args[4] = String(this.stateTtlMs);
    args[5] = String(request.reserve ?? 0);
    args[6] = String(nq);
    for (let b = 0; b < 4; b++) args[7 + b] = bounds === null ? '0' : String(bounds[b]);
    args[11] = String(reservedTokens(request.tokens));
    for (let j = 0; j < nq; j++) {
      const q = quotas[j]!;
      quotaKeysInto(this.keyPrefix, keys, j * QUOTA_KEYS, q, bounds!);
      args[12 + j * 4] = str(q.rpmLimit);
      args[13 + j * 4] = str(q.rpdLimit);
      args[14 + j * 4] = str(q.tpmLimit ?? null);
      args[15 + j * 4] = str(q.tpdLimit ?? null);
    }
    const ko = nq * QUOTA_KEYS;
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      const k = this.keysOf(request.pool, c.id);
      const at = ko + i * 6;
      keys[at] = k[0];
      keys[at + 1] = k[1];
      keys[at + 2] = k[2];
      keys[at + 3] = this.slotKey(request.pool, c.id, k[0], c.scope, request.model);
      keys[at + 4] = k[3];
      keys[at + 5] = k[4];
      args[ao + i * 4] = c.id;
      args[ao + 1 + i * 4] = str(c.rpmLimit);
      args[ao + 2 + i * 4] = str(c.tpmLimit);
      args[ao + 3 + i * 4] = str(c.maxConcurrency);
    }
    const reply = (await this.run(ADMIT, keys, args)) as unknown[];
    return admitResultOf(reply, leaseId, request.nowMs, quotas);
  }

  /** Current minute and day counts of a quota subject (admin usage). */
  async inspectQuota(subject: QuotaSubject, nowMs: number, dayBounds?: DayBounds): Promise<QuotaUsage> {
    const bounds = dayBounds ?? utcDayBounds(nowMs);
    const keys = quotaKeysInto(this.keyPrefix, new Array<string>(QUOTA_KEYS), 0, subject, bounds);
    const reply = (await this.run(QUOTA_INSPECT, keys, [this.testClock ? String(nowMs) : '', ...bounds.map(String)])) as unknown[];
    const day = pickDay(bounds, nowMs);
    return { minute: Number(reply[1]), day: Number(reply[2]), dayStartMs: day[0], dayEndMs: day[1], tokenMinute: Number(reply[5]), tokenDay: Number(reply[6]) };
  }

  /**
   * Token reconcile (RECONCILE_LUA): the account's window and each quota's windows and admitted day. One script on one
   * server; on a Cluster one for the pool's slot and one per quota subject's slot.
   */
  reconcileTokens(
    pool: string,
    accountId: string,
    leaseId: string,
    admittedAtMs: number,
    deltaTokens: number,
    quotas: readonly QuotaRef[],
    nowMs: number,
    dayBounds?: DayBounds,
  ): Promise<void> {
    const delta = Math.round(deltaTokens);
    if (delta === 0 || !Number.isFinite(delta)) return Promise.resolve();
    const args = [leaseId, String(delta), this.testClock ? String(nowMs) : ''];
    const dayStart = quotas.length === 0 ? 0 : pickDay(dayBounds ?? utcDayBounds(admittedAtMs), admittedAtMs)[0];
    const calls = reconcileCalls(this.keyPrefix, this.keysOf(pool, accountId), quotas, dayStart, this.redis.isCluster).map(([keys, withAccount]) => {
      try {
        return this.run(RECONCILE, keys, [...args, withAccount]).then(noop, (error: unknown) => this.backgroundError(error));
      } catch (error) {
        this.backgroundError(error);
        return undefined;
      }
    });
    return Promise.all(calls).then(() => undefined);
  }

  release(pool: string, accountId: string, leaseId: string): void {
    this.sendRelease(this.keysOf(pool, accountId)[2], leaseId);
  }

  observe(
    pool: string,
    accountId: string,
    observation: Observation,
    nowMs: number,
    releaseLeaseId?: string | null,
    target?: LearnedTarget,
  ): Promise<void> {
    const learned: LearnedLimits = observation.learned;
    const keys = this.keysOf(pool, accountId);
    const slotKey = this.slotKey(pool, accountId, keys[0], target?.scope, target?.model);
    const args = [
      observation.outcome,
      str(observation.cooldownUntilMs),
      str(learned.requestsLimit),
      str(learned.requestsRemaining),
      str(learned.requestsResetAtMs),
      str(learned.tokensLimit),
      str(learned.tokensRemaining),
      str(learned.tokensResetAtMs),
      String(nowMs),
      this.testClock ? String(nowMs) : '',
      String(this.stateTtlMs),
      releaseLeaseId ?? '',
      // A scope's slot lives like an account's state; a per-model slot only as long as what it holds (plus a minute).
      String(target?.model ? MODEL_SLOT_MIN_TTL_MS : this.stateTtlMs),
    ];
    return this.run(OBSERVE, [keys[0], keys[2], slotKey], args).then(
      (reply) => this.reportHealthChange(pool, accountId, reply),
      (error: unknown) => {
        this.backgroundError(error);
        // The slot must come back even though the observation is lost: retried like any failed release.
        if (releaseLeaseId) this.queueRelease(keys[2], releaseLeaseId);
      },
    );
  }

  renew(pool: string, accountId: string, leaseId: string, leaseMs: number, nowMs: number): void {
    const args = [leaseId, String(leaseMs), this.testClock ? String(nowMs) : ''];
    try {
      this.run(RENEW, [this.keysOf(pool, accountId)[2]], args).catch((error: unknown) => this.backgroundError(error));
    } catch (error) {
      this.backgroundError(error);
    }
  }

  private reportHealthChange(pool: string, accountId: string, reply: unknown): void {
    if (!this.onHealthChange || !Array.isArray(reply)) return;
    const [, from, to] = reply as [unknown, HealthState, HealthState];
    if (from !== to) this.onHealthChange({ pool, accountId, from, to });
  }

  async inspect(pool: string, accountIds: readonly string[], nowMs: number, scopes?: ReadonlyMap<string, string>): Promise<AccountStateView[]> {
    if (accountIds.length === 0) return [];
    const keys = accountIds.flatMap((id) => {
      const k = this.keysOf(pool, id);
      return [k[0], k[1], k[2], this.slotKey(pool, id, k[0], scopes?.get(id), null)];
    });
    const reply = (await this.run(INSPECT, keys, [this.testClock ? String(nowMs) : ''])) as unknown[];
    return accountViewsOf(reply, accountIds, nowMs);
  }

  async resetAccount(pool: string, accountId: string): Promise<void> {
    await this.redis.hdel(this.keysOf(pool, accountId)[0], ...RESET_FIELDS);
  }

  async close(): Promise<void> {
    this.redis.off('ready', this.onReady);
    if (!this.ownsClient) {
      this.redis.off('error', this.onError);
      return;
    }
    // An owned client keeps the error listener: errors raised while quitting are counted, not printed.
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** The keys of one account (./redis-keys.ts accountKeys), cached. */
  keysOf(pool: string, accountId: string): AccountKeys {
    let byAccount = this.keyCache.get(pool);
    if (byAccount === undefined) {
      byAccount = new Map();
      this.keyCache.set(pool, byAccount);
    }
    let keys = byAccount.get(accountId);
    if (keys === undefined) {
      if (this.keyCacheSize >= KEY_CACHE_MAX) {
        this.keyCache.clear();
        this.keyCacheSize = 0;
        byAccount = new Map();
        this.keyCache.set(pool, byAccount);
      }
      keys = accountKeys(this.keyPrefix, pool, accountId);
      byAccount.set(accountId, keys);
      this.keyCacheSize++;
    }
    return keys;
  }

  /** The hash holding a candidate's cooldown and learned limits (learned-state.ts): its own state hash, or a slot's. */
  private slotKey(pool: string, accountId: string, stateKey: string, scope: string | null | undefined, model: string | null | undefined): string {
    const suffix = learnedKeySuffix(learnedSlot(accountId, scope, model));
    return suffix === null ? stateKey : `${this.keyPrefix}{kp:${escapeTag(pool)}}:${suffix}`;
  }

  private run(s: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    return this.redis.evalsha(s.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        // EVAL also puts the script into the server's cache for the next EVALSHA.
        return this.redis.eval(s.lua, keys.length, ...keys, ...args);
      }
      throw error;
    });
  }

  /** Keeps a release that failed for the next reconnect (bounded; beyond it the lease simply expires). */
  private queueRelease(leaseKey: string, leaseId: string): void {
    // ZREM is idempotent: retrying one that did reach Redis is harmless.
    if (this.pendingReleases.length >= PENDING_RELEASES_MAX) {
      this.pendingReleases.shift();
      this.droppedReleases++;
    }
    this.pendingReleases.push([leaseKey, leaseId]);
  }

  private sendRelease(leaseKey: string, leaseId: string): void {
    const failed = (error: unknown): void => {
      this.backgroundError(error);
      this.queueRelease(leaseKey, leaseId);
    };
    try {
      this.redis.zrem(leaseKey, leaseId).catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  private retryReleases(): void {
    const pending = this.pendingReleases;
    if (pending.length === 0) return;
    this.pendingReleases = [];
    for (const [key, leaseId] of pending) this.sendRelease(key, leaseId);
  }

  private loadScripts(): void {
    for (const s of [ADMIT, OBSERVE, INSPECT, RENEW, QUOTA_RESERVE, QUOTA_REFUND, QUOTA_INSPECT, RECONCILE]) {
      this.redis.script('LOAD', s.lua).catch((error: unknown) => this.backgroundError(error));
    }
  }

  private backgroundError(error: unknown): void {
    this.errors++;
    if (this.onBackgroundError !== undefined) {
      try {
        this.onBackgroundError(error);
      } catch {
        // A failing callback must not break the store.
      }
    }
  }
}
