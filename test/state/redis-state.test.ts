// The Redis store against the real Redis at 127.0.0.1:6379: the shared contract (on a test clock), then what only
// Redis has: the server clock, atomicity across connections, real lease expiry, script cache loss, key layout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { WINDOW_MS } from '../../src/core/capacity.js';
import { REDIS_CLIENT_DEFAULTS, RedisRateStateStore } from '../../src/stores/redis-state.js';
import { cand, obs, rateStateContract } from './rate-state.contract.js';
import { quotaStateContract } from './quota-state.contract.js';
import { tokenStateContract } from './token-state.contract.js';
import { deletePrefix, REDIS_URL, redisAvailable, sleep, uniquePrefix } from './services.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
let client: Redis;

describe.skipIf(!available)('redis', () => {
  beforeAll(async () => {
    client = new Redis(REDIS_URL, REDIS_CLIENT_DEFAULTS);
    await new RedisRateStateStore(client, { keyPrefix: prefix }).ready(5_000);
  });

  afterAll(async () => {
    await deletePrefix(client, prefix);
    await client.quit();
  });

  // Test clock: the scripts run on the nowMs the test passes instead of Redis TIME (see the real-clock tests below).
  rateStateContract('redis', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });
  quotaStateContract('redis', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });
  tokenStateContract('redis', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });

  describe('RedisRateStateStore on the Redis clock', () => {
    const request = (pool: string, candidates: ReturnType<typeof cand>[], nowMs = Date.now(), leaseMs = 60_000) => ({
      pool,
      candidates,
      leastLoaded: false,
      nowMs,
      leaseMs,
    });

    it('enforces RPM on Redis TIME and reports the retry time in the caller clock, whatever that clock says', async () => {
      const store = new RedisRateStateStore(client, { keyPrefix: prefix });
      const c = [cand('a', { rpmLimit: 3 })];
      const started = Date.now();
      for (let i = 0; i < 3; i++) expect((await store.admit(request('rt-rpm', c))).ok).toBe(true);
      const honest = await store.admit(request('rt-rpm', c));
      expect(honest.ok).toBe(false);
      if (honest.ok) return;
      expect(honest.reason).toBe('exhausted');
      expect(honest.retryAtMs!).toBeGreaterThanOrEqual(started + WINDOW_MS - 1_000);
      expect(honest.retryAtMs!).toBeLessThanOrEqual(Date.now() + WINDOW_MS + 1_000);
      // A replica whose clock is an hour behind gets the same instant in its own clock.
      const skewedNow = Date.now() - 3_600_000;
      const skewed = await store.admit(request('rt-rpm', c, skewedNow));
      expect(skewed.ok).toBe(false);
      if (skewed.ok) return;
      expect(Math.abs(skewed.retryAtMs! - skewedNow - (honest.retryAtMs! - Date.now()))).toBeLessThan(1_000);
    });

    it("a cooldown seen by a replica with a skewed clock lasts the provider's duration for every replica", async () => {
      const skewedReplica = new RedisRateStateStore(client, { keyPrefix: prefix });
      const otherReplica = new RedisRateStateStore(client, { keyPrefix: prefix });
      const skewedNow = Date.now() + 120_000;
      skewedReplica.observe('rt-cd', 'a', obs('rate_limited', { cooldownUntilMs: skewedNow + 7_000 }), skewedNow);
      const result = await otherReplica.admit(request('rt-cd', [cand('a')]));
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.retryAtMs! - Date.now()).toBeGreaterThan(6_000);
      expect(result.retryAtMs! - Date.now()).toBeLessThanOrEqual(7_500);
    });

    it('admits exactly rpmLimit across connections under concurrency (atomic script)', async () => {
      const replicas = await Promise.all(
        [0, 1, 2].map(async () => {
          const redis = new Redis(REDIS_URL, REDIS_CLIENT_DEFAULTS);
          const store = new RedisRateStateStore(redis, { keyPrefix: prefix }, true);
          await store.ready(5_000);
          return store;
        }),
      );
      try {
        const c = [cand('a', { rpmLimit: 60, maxConcurrency: 1_000 }), cand('b', { rpmLimit: 60, maxConcurrency: 1_000 })];
        const results = await Promise.all(replicas.flatMap((store) => Array.from({ length: 100 }, () => store.admit(request('rt-atomic', c)))));
        const byAccount = new Map<string, number>();
        for (const r of results) if (r.ok) byAccount.set(r.accountId, (byAccount.get(r.accountId) ?? 0) + 1);
        expect(Object.fromEntries(byAccount)).toEqual({ a: 60, b: 60 });
        expect(results.filter((r) => !r.ok).length).toBe(180);
        // max_concurrency across replicas: nobody releases, so exactly maxConcurrency slots are handed out.
        const busy = [cand('c', { maxConcurrency: 5 })];
        const held = await Promise.all(replicas.flatMap((store) => Array.from({ length: 50 }, () => store.admit(request('rt-atomic', busy)))));
        expect(held.filter((r) => r.ok).length).toBe(5);
        expect((await replicas[0]!.inspect('rt-atomic', ['c'], Date.now()))[0]!.inFlight).toBe(5);
      } finally {
        await Promise.all(replicas.map((s) => s.close()));
      }
    });

    it('an unreleased lease (SIGKILLed holder) frees its slot after leaseMs of real time', async () => {
      const store = new RedisRateStateStore(client, { keyPrefix: prefix });
      const c = [cand('a', { maxConcurrency: 1 })];
      expect((await store.admit(request('rt-lease', c, Date.now(), 300))).ok).toBe(true);
      expect((await store.admit(request('rt-lease', c, Date.now(), 300))).ok).toBe(false);
      await sleep(350);
      expect((await store.admit(request('rt-lease', c, Date.now(), 300))).ok).toBe(true);
    });

    it('keeps working after the server lost its script cache (NOSCRIPT -> EVAL)', async () => {
      const store = new RedisRateStateStore(client, { keyPrefix: prefix });
      await client.script('FLUSH');
      expect((await store.admit(request('rt-noscript', [cand('a')]))).ok).toBe(true);
      store.observe('rt-noscript', 'a', obs('invalid_credential'), Date.now());
      await sleep(50);
      expect((await store.inspect('rt-noscript', ['a'], Date.now()))[0]!.invalid).toBe(true);
    });

    it('keeps every key of a pool under one hash tag, with TTLs', async () => {
      const store = new RedisRateStateStore(client, { keyPrefix: prefix });
      const c = [cand('acc-1', { rpmLimit: 10 }), cand('acc{2}', { maxConcurrency: 5 })];
      await store.admit(request('tagged', c));
      await store.admit({ ...request('tagged', c), candidates: [c[1]!] });
      store.observe('tagged', 'acc{2}', obs('server_error'), Date.now());
      await store.inspect('tagged', ['acc{2}'], Date.now());
      const [, keys] = await client.scan('0', 'MATCH', `${prefix}{kp:tagged}*`, 'COUNT', 1000);
      expect(keys.length).toBe(5);
      for (const key of keys) {
        // The hash tag is the first {...}: account names with braces are escaped so they cannot move it.
        expect(key.slice(prefix.length).match(/\{([^}]*)\}/)?.[1]).toBe('kp:tagged');
        const ttl = await client.pttl(key);
        expect(ttl).toBeGreaterThan(0);
      }
      const stateTtl = await client.pttl(store.keysOf('tagged', 'acc{2}')[0]);
      expect(stateTtl).toBeGreaterThan(23 * 3_600_000);
    });

    it('keeps scope and per-model slot keys under the pool tag; a per-model key lives until its reset plus a minute', async () => {
      const store = new RedisRateStateStore(client, { keyPrefix: prefix });
      const now = Date.now();
      const learned = { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: now + 30_000 };
      await store.observe('slots', 'acc-1', obs('success', { learned }), now, null, { scope: null, model: 'gpt-4o' });
      await store.observe('slots', 'acc-2', obs('rate_limited', { cooldownUntilMs: now + 5_000 }), now, null, { scope: 'org/p{1}', model: 'o1' });
      await store.observe('slots', 'acc-3', obs('rate_limited', { cooldownUntilMs: now + 5_000 }), now, null, { scope: 'org/p{1}', model: null });
      // A success that reports nothing creates no per-model key.
      await store.observe('slots', 'acc-4', obs('success'), now, null, { scope: null, model: 'gpt-4o' });
      const [, keys] = await client.scan('0', 'MATCH', `${prefix}{kp:slots}:~*`, 'COUNT', 1000);
      const tail = (k: string) => k.slice(`${prefix}{kp:slots}:`.length);
      expect(keys.map(tail).sort()).toEqual(['~a:acc-1:m:gpt-4o', '~s:org%2Fp%7B1%7D', '~s:org%2Fp%7B1%7D:m:o1']);
      const ttl = async (suffix: string) => client.pttl(`${prefix}{kp:slots}:${suffix}`);
      // reset (30 s) + 60 s, never the day-long state TTL.
      expect(await ttl('~a:acc-1:m:gpt-4o')).toBeGreaterThan(60_000);
      expect(await ttl('~a:acc-1:m:gpt-4o')).toBeLessThanOrEqual(90_000);
      expect(await ttl('~s:org%2Fp%7B1%7D:m:o1')).toBeLessThanOrEqual(65_000);
      // A scope's own slot lives like an account's state.
      expect(await ttl('~s:org%2Fp%7B1%7D')).toBeGreaterThan(23 * 3_600_000);
      // The account state hash does not hold what went to a slot.
      expect(await client.hget(store.keysOf('slots', 'acc-1')[0], 'rr')).toBeNull();
    });

    it('release and observe never throw and count failures when Redis is unreachable', async () => {
      const dead = RedisRateStateStore.connect('redis://127.0.0.1:1', {}, { retryStrategy: () => null, connectTimeout: 200 });
      expect(() => dead.release('p', 'a', 'x')).not.toThrow();
      expect(() => dead.observe('p', 'a', obs('success'), Date.now())).not.toThrow();
      await expect(dead.admit(request('p', [cand('a')]))).rejects.toThrow();
      await sleep(50);
      expect(dead.backgroundErrors).toBeGreaterThanOrEqual(2);
      await dead.close();
    });
  });
});
