// Rate state shared by every replica through Redis. admit() is one round trip (EVALSHA of ADMIT_LUA); observe() is
// one EVALSHA that also carries the release of a finished request (so a request costs two commands); release() and
// renew() are fire-and-forget commands that ioredis pipelines with whatever else is in flight.
// The rules are src/core/capacity.ts's; the scripts in ./redis-scripts.ts mirror them (see the key layout there).
import { createHash, randomBytes } from 'node:crypto';
import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import type { LearnedLimits, Observation } from '../core/types.js';
import type { AccountStateView, AdmitRequest, AdmitResult, HealthChange, HealthState, RateStateStore } from '../ports.js';
import { ADMIT_LUA, INSPECT_LUA, OBSERVE_LUA, RENEW_LUA, RESET_FIELDS } from './redis-scripts.js';

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

type AccountKeys = readonly [state: string, window: string, leases: string];

function str(n: number | null): string {
  return n === null ? '' : String(n);
}

function numOrNull(v: unknown): number | null {
  if (v === null || v === undefined || v === '' || v === false) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
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
    // A restarted Redis has an empty script cache: load on every (re)connect so EVALSHA rarely misses.
    redis.on('ready', this.onReady);
    // Without a listener ioredis prints every connection error; count and hand them to the caller instead.
    redis.on('error', this.onError);
    if (redis.status === 'ready') this.loadScripts();
  }

  /** Creates a client for `url` with REDIS_CLIENT_DEFAULTS (plus `clientOptions`) and a store owning it. */
  static connect(url: string, options: RedisRateStateStoreOptions = {}, clientOptions: RedisOptions = {}): RedisRateStateStore {
    const redis = new Redis(url, { ...REDIS_CLIENT_DEFAULTS, ...clientOptions });
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

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    const candidates = request.candidates;
    if (candidates.length === 0) return { ok: false, reason: 'unhealthy', retryAtMs: null };
    const leaseId = `${this.instanceId}.${(++this.leaseSeq).toString(36)}`;
    const keys: string[] = new Array<string>(candidates.length * 3);
    const args: string[] = new Array<string>(5 + candidates.length * 4);
    args[0] = leaseId;
    args[1] = String(request.leaseMs);
    args[2] = request.leastLoaded ? '1' : '0';
    args[3] = this.testClock ? String(request.nowMs) : '';
    args[4] = String(this.stateTtlMs);
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      const k = this.keysOf(request.pool, c.id);
      keys[i * 3] = k[0];
      keys[i * 3 + 1] = k[1];
      keys[i * 3 + 2] = k[2];
      args[5 + i * 4] = c.id;
      args[6 + i * 4] = str(c.rpmLimit);
      args[7 + i * 4] = str(c.tpmLimit);
      args[8 + i * 4] = str(c.maxConcurrency);
    }
    const reply = (await this.run(ADMIT, keys, args)) as unknown[];
    if (reply[0] === 1) return { ok: true, accountId: String(reply[1]), leaseId };
    const redisNowMs = Number(reply[3]);
    const retry = Number(reply[2]);
    return {
      ok: false,
      reason: reply[1] === 'unhealthy' ? 'unhealthy' : 'exhausted',
      // Back into the caller's clock.
      retryAtMs: retry < 0 ? null : retry - redisNowMs + request.nowMs,
    };
  }

  release(pool: string, accountId: string, leaseId: string): void {
    this.sendRelease(this.keysOf(pool, accountId)[2], leaseId);
  }

  observe(pool: string, accountId: string, observation: Observation, nowMs: number, releaseLeaseId?: string | null): Promise<void> {
    const learned: LearnedLimits = observation.learned;
    const keys = this.keysOf(pool, accountId);
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
    ];
    return this.run(OBSERVE, [keys[0], keys[2]], args).then(
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

  async inspect(pool: string, accountIds: readonly string[], nowMs: number): Promise<AccountStateView[]> {
    if (accountIds.length === 0) return [];
    const keys = accountIds.flatMap((id) => this.keysOf(pool, id));
    const reply = (await this.run(INSPECT, keys, [this.testClock ? String(nowMs) : ''])) as unknown[];
    const shift = nowMs - Number(reply[0]);
    const at = (v: unknown): number | null => {
      const n = numOrNull(v);
      return n === null ? null : n + shift;
    };
    const future = (v: unknown): number | null => {
      const n = at(v);
      return n !== null && n > nowMs ? n : null;
    };
    return accountIds.map((accountId, i) => {
      const f = (j: number): unknown => reply[1 + i * 12 + j];
      const health = f(0);
      return {
        accountId,
        health: health === 'degraded' || health === 'unhealthy' ? (health as HealthState) : 'healthy',
        inFlight: Number(f(1)),
        cooldownUntilMs: future(f(2)),
        circuitOpenUntilMs: future(f(3)),
        requestsInWindow: Number(f(4)),
        invalid: future(f(5)) !== null,
        learned: {
          requestsLimit: numOrNull(f(6)),
          requestsRemaining: numOrNull(f(7)),
          requestsResetAtMs: at(f(8)),
          tokensLimit: numOrNull(f(9)),
          tokensRemaining: numOrNull(f(10)),
          tokensResetAtMs: at(f(11)),
        },
      };
    });
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

  /** The three keys of one account; every key of a pool shares the `{kp:<pool>}` hash tag (one Cluster slot). */
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
      // Braces inside a name would move or break the hash tag: escape them.
      const base = `${this.keyPrefix}{kp:${escapeTag(pool)}}:${escapeTag(accountId)}:`;
      keys = [`${base}s`, `${base}w`, `${base}l`];
      byAccount.set(accountId, keys);
      this.keyCacheSize++;
    }
    return keys;
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
    for (const s of [ADMIT, OBSERVE, INSPECT, RENEW]) {
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

function escapeTag(name: string): string {
  return name.includes('{') || name.includes('}') || name.includes('%') ? encodeURIComponent(name) : name;
}
