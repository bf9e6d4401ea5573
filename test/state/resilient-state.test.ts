// The breaker-wrapped store: Redis unreachable (closed port), slow (delaying proxy), gone and back (proxy stopped and
// restarted). Every admit must settle within the timeout, and the failure mode must be followed.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { AdmitRequest, RateStateStore } from '../../src/ports.js';
import { REDIS_CLIENT_DEFAULTS, RedisRateStateStore } from '../../src/stores/redis-state.js';
import {
  ResilientRateStateStore,
  type ResilientRateStateStoreOptions,
  type StateTransition,
  StateUnavailableError,
} from '../../src/stores/resilient-state.js';
import { cand, obs } from './rate-state.contract.js';
import { deletePrefix, REDIS_URL, redisAvailable, sleep, uniquePrefix } from './services.js';
import { CutProxy, freePort } from '../helpers/cut-proxy.js';

const TIMEOUT_MS = 50;
/** Admit must settle within the timeout; allow scheduling slack on a busy 2-core machine. */
const SETTLE_BOUND_MS = TIMEOUT_MS + 60;

const prefix = uniquePrefix();
const opened: RateStateStore[] = [];

function request(pool: string, candidates: ReturnType<typeof cand>[]): AdmitRequest {
  return { pool, candidates, leastLoaded: false, nowMs: Date.now(), leaseMs: 60_000 };
}

function resilient(url: string, options: ResilientRateStateStoreOptions = {}): { store: ResilientRateStateStore; transitions: StateTransition[] } {
  const transitions: StateTransition[] = [];
  const shared = RedisRateStateStore.connect(url, { keyPrefix: prefix }, { connectTimeout: 200 });
  const store = new ResilientRateStateStore(shared, {
    timeoutMs: TIMEOUT_MS,
    resetTimeoutMs: 200,
    onTransition: (t) => transitions.push(t),
    ...options,
  });
  opened.push(store);
  return { store, transitions };
}

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work;
  return { value, ms: performance.now() - started };
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

describe('ResilientRateStateStore with nothing listening', () => {
  it("'local' mode reserves tokens against the divided tpm limit, and a reconcile of a local lease frees them there", async () => {
    const port = await freePort();
    const { store } = resilient(`redis://127.0.0.1:${port}`, { failureMode: 'local', expectedReplicas: 2 });
    const c = [cand('a', { tpmLimit: 2000 })];
    const nowMs = Date.now();
    // 2000 / 2 replicas = 1000 per replica.
    const first = await store.admit({ ...request('local-tokens', c), nowMs, tokens: 800 });
    expect(first.ok).toBe(true);
    expect((await store.admit({ ...request('local-tokens', c), nowMs, tokens: 300 })).ok).toBe(false);
    if (!first.ok) return;
    expect(first.leaseId.startsWith('~')).toBe(true);
    await store.reconcileTokens('local-tokens', 'a', first.leaseId, nowMs, -500, [], nowMs);
    expect((await store.admit({ ...request('local-tokens', c), nowMs, tokens: 300 })).ok).toBe(true);
  });

  it("'local' mode admits on per-replica state with limits divided by expectedReplicas, and says so once", async () => {
    const port = await freePort();
    const { store, transitions } = resilient(`redis://127.0.0.1:${port}`, { failureMode: 'local', expectedReplicas: 3 });
    const c = [cand('a', { rpmLimit: 6, maxConcurrency: 30 })];
    const outcomes: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const { value, ms } = await timed(store.admit(request('local-div', c)));
      expect(ms).toBeLessThan(SETTLE_BOUND_MS);
      outcomes.push(value.ok);
    }
    // 6 / 3 replicas = 2 per replica.
    expect(outcomes).toEqual([true, true, false]);
    for (let i = 0; i < 10; i++) await store.admit(request('local-more', [cand('x')]));
    expect(store.breakerState).toBe('open');
    expect(store.mode).toBe('local');
    expect(transitions).toHaveLength(1);
    expect(transitions[0]).toMatchObject({ available: false, mode: 'local', failureMode: 'local' });
  });

  it('local leases are released locally and observations are applied locally', async () => {
    const port = await freePort();
    const { store } = resilient(`redis://127.0.0.1:${port}`);
    const c = [cand('a', { maxConcurrency: 1 }), cand('b', { maxConcurrency: 1 })];
    const first = await store.admit(request('local-release', c));
    expect(first).toMatchObject({ ok: true, accountId: 'a' });
    if (!first.ok) return;
    store.release('local-release', 'a', first.leaseId);
    expect(await store.admit(request('local-release', c))).toMatchObject({ ok: true, accountId: 'a' });
    store.observe('local-release', 'b', obs('invalid_credential'), Date.now());
    const [view] = await store.inspect('local-release', ['b'], Date.now());
    expect(view!.invalid).toBe(true);
  });

  it('the local fallback keeps scope and per-model slots too (the observation target is passed on)', async () => {
    const port = await freePort();
    const { store } = resilient(`redis://127.0.0.1:${port}`);
    const now = Date.now();
    const [a, b] = [cand('a', { scope: 'proj' }), cand('b', { scope: 'proj' })];
    await store.observe('local-slots', 'a', obs('rate_limited', { cooldownUntilMs: now + 60_000 }), now, null, { scope: 'proj', model: 'gpt-4o' });
    expect(await store.admit({ ...request('local-slots', [a, b]), model: 'gpt-4o' })).toMatchObject({ ok: false, reason: 'exhausted' });
    expect(await store.admit({ ...request('local-slots', [a, b]), model: 'o1' })).toMatchObject({ ok: true, accountId: 'a' });
  });

  it("'closed' mode rejects quickly with StateUnavailableError, before and after the breaker opens", async () => {
    const port = await freePort();
    const { store, transitions } = resilient(`redis://127.0.0.1:${port}`, { failureMode: 'closed' });
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const error = await store.admit(request('closed', [cand('a')])).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StateUnavailableError);
      expect(performance.now() - started).toBeLessThan(SETTLE_BOUND_MS);
    }
    expect(store.breakerState).toBe('open');
    expect(store.mode).toBe('shared');
    expect(transitions).toEqual([expect.objectContaining({ available: false, failureMode: 'closed' })]);
  });
});

const available = await redisAvailable();

describe.skipIf(!available)('ResilientRateStateStore in front of the real Redis (through a proxy)', () => {
  let proxy: CutProxy;
  let direct: RedisRateStateStore;
  let directClient: Redis;

  beforeAll(async () => {
    directClient = new Redis(REDIS_URL, REDIS_CLIENT_DEFAULTS);
    direct = new RedisRateStateStore(directClient, { keyPrefix: prefix });
    await direct.ready(5_000);
  });

  afterEach(async () => {
    await proxy?.cut();
  });

  afterAll(async () => {
    await deletePrefix(directClient, prefix);
    await direct.close();
    await directClient.quit();
  });

  async function inFlight(pool: string, accountId: string): Promise<number> {
    const [view] = await direct.inspect(pool, [accountId], Date.now());
    return view!.inFlight;
  }

  it('a slow Redis never holds a request past the timeout, and a late shared admission gives its slot back', async () => {
    proxy = new CutProxy(6379);
    const port = await proxy.start();
    const { store } = resilient(`redis://127.0.0.1:${port}`, { volumeThreshold: 100 });
    await sleep(100);
    expect((await store.admit(request('slow', [cand('a')]))).ok).toBe(true);
    expect(await inFlight('slow', 'a')).toBe(1);
    proxy.delayMs = 250;
    const { value, ms } = await timed(store.admit(request('slow', [cand('a')])));
    expect(ms).toBeLessThan(SETTLE_BOUND_MS);
    expect(value.ok).toBe(true);
    // Redis admitted the timed-out request too; once its reply arrives the store releases that slot.
    await sleep(600);
    expect(await inFlight('slow', 'a')).toBe(1);
  });

  it('falls back when Redis goes away and returns to shared state by itself when it is back', async () => {
    proxy = new CutProxy(6379);
    const port = await proxy.start();
    const { store, transitions } = resilient(`redis://127.0.0.1:${port}`);
    await sleep(100);
    const c = [cand('a', { maxConcurrency: 100 })];
    expect((await store.admit(request('recover', c))).ok).toBe(true);
    expect(await inFlight('recover', 'a')).toBe(1);
    expect(store.mode).toBe('shared');
    const held = await store.admit(request('recover', [cand('held', { maxConcurrency: 1 })]));
    expect(held.ok).toBe(true);
    expect(await inFlight('recover', 'held')).toBe(1);

    await proxy.cut();
    // Released while Redis is away: retried when it is back, so the slot does not wait for its lease to expire.
    if (held.ok) store.release('recover', 'held', held.leaseId);
    const deadline = Date.now() + 3_000;
    while (store.mode !== 'local' && Date.now() < deadline) {
      const { value, ms } = await timed(store.admit(request('recover', c)));
      expect(ms).toBeLessThan(SETTLE_BOUND_MS);
      expect(value.ok).toBe(true);
      await sleep(10);
    }
    expect(store.mode).toBe('local');
    // Half-open trials keep failing while Redis is away: still one transition.
    await sleep(500);
    for (let i = 0; i < 5; i++) await store.admit(request('recover', c));
    expect(transitions).toHaveLength(1);

    await proxy.restore();
    const back = Date.now() + 5_000;
    while (store.mode !== 'shared' && Date.now() < back) {
      const { ms } = await timed(store.admit(request('recover', c)));
      expect(ms).toBeLessThan(SETTLE_BOUND_MS);
      await sleep(50);
    }
    expect(store.mode).toBe('shared');
    expect(store.breakerState).toBe('closed');
    expect(transitions.map((t) => t.available)).toEqual([false, true]);
    const releasedBy = Date.now() + 2_000;
    while ((await inFlight('recover', 'held')) !== 0 && Date.now() < releasedBy) await sleep(20);
    expect(await inFlight('recover', 'held')).toBe(0);
    const before = await inFlight('recover', 'a');
    expect((await store.admit(request('recover', c))).ok).toBe(true);
    expect(await inFlight('recover', 'a')).toBe(before + 1);
  });
});
