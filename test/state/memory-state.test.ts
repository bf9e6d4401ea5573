import { describe, expect, it } from 'vitest';
import { MemoryRateStateStore } from '../../src/stores/memory-state.js';
import { MAX_MODELS_PER_OWNER } from '../../src/core/learned-state.js';
import { cand, obs, rateStateContract } from './rate-state.contract.js';
import { quotaStateContract } from './quota-state.contract.js';
import { tokenStateContract } from './token-state.contract.js';

rateStateContract('memory', { create: async (options) => new MemoryRateStateStore(options) });
quotaStateContract('memory', { create: async (options) => new MemoryRateStateStore(options) });
tokenStateContract('memory', { create: async (options) => new MemoryRateStateStore(options) });

describe('MemoryRateStateStore specifics', () => {
  const T0 = 1_800_000_000_000;
  const request = (candidates: ReturnType<typeof cand>[], nowMs: number) => ({ pool: 'p', candidates, leastLoaded: false, nowMs, leaseMs: 60_000 });

  it('divides every limit by limitDivisor, rounding down, at least 1', async () => {
    const store = new MemoryRateStateStore({ limitDivisor: 3 });
    const c = [cand('a', { rpmLimit: 7, maxConcurrency: 100 })];
    expect((await store.admit(request(c, T0))).ok).toBe(true);
    expect((await store.admit(request(c, T0 + 1))).ok).toBe(true);
    expect(await store.admit(request(c, T0 + 2))).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 60_000 });
    const tiny = [cand('b', { maxConcurrency: 2 })];
    expect((await store.admit(request(tiny, T0))).ok).toBe(true);
    expect((await store.admit(request(tiny, T0))).ok).toBe(false);
  });

  it('stays bounded: forgets idle accounts beyond maxAccounts', async () => {
    const store = new MemoryRateStateStore({ maxAccounts: 2 });
    store.observe('p', 'a', obs('invalid_credential'), T0);
    store.observe('p', 'b', obs('success'), T0);
    store.observe('p', 'c', obs('success'), T0);
    // 'a' was the oldest idle state and has been forgotten, so its invalid hold is gone.
    expect((await store.admit(request([cand('a')], T0 + 1))).ok).toBe(true);
  });

  it('keeps at most MAX_MODELS_PER_OWNER per-model slots per account or scope, forgetting the least recently written', async () => {
    const store = new MemoryRateStateStore();
    const exhausted = obs('success', { learned: { requestsLimit: 10, requestsRemaining: 0, requestsResetAtMs: T0 + 60_000 } });
    const admitFor = async (model: string) => (await store.admit({ ...request([cand('a')], T0 + 1), model })).ok;
    for (let i = 0; i < MAX_MODELS_PER_OWNER; i++) await store.observe('p', 'a', exhausted, T0, null, { scope: null, model: `m${i}` });
    // Writing m0 again makes it the most recent: m1 is the one forgotten when m-new arrives.
    await store.observe('p', 'a', exhausted, T0, null, { scope: null, model: 'm0' });
    await store.observe('p', 'a', exhausted, T0, null, { scope: null, model: 'm-new' });
    expect([await admitFor('m0'), await admitFor('m1'), await admitFor('m2'), await admitFor('m-new')]).toEqual([false, true, false, false]);
    // Another owner has its own budget of slots.
    await store.observe('p', 'b', exhausted, T0, null, { scope: 'shared', model: 'm1' });
    expect((await store.admit({ ...request([cand('b', { scope: 'shared' })], T0 + 1), model: 'm1' })).ok).toBe(false);
  });

  it('admits in microseconds', async () => {
    const store = new MemoryRateStateStore();
    const c = [cand('a', { maxConcurrency: 10 }), cand('b', { maxConcurrency: 10 }), cand('c', { rpmLimit: 1_000_000 })];
    const n = 50_000;
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = store.admitNow(request(c, T0 + i));
      if (r.ok) store.release('p', r.accountId, r.leaseId);
    }
    const nsPerAdmit = Number(process.hrtime.bigint() - started) / n;
    console.log(`[memory-state] ${Math.round(nsPerAdmit)} ns per admit+release`);
    expect(nsPerAdmit).toBeLessThan(20_000);
  });
});
