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

  it('stores no slot for an observation that writes nothing into it: a full owner keeps its live slots', async () => {
    const store = new MemoryRateStateStore();
    const exhausted = obs('success', { learned: { requestsLimit: 10, requestsRemaining: 0, requestsResetAtMs: T0 + 60_000 } });
    const admitFor = async (model: string) => (await store.admit({ ...request([cand('a')], T0 + 2), model })).ok;
    for (let i = 0; i < MAX_MODELS_PER_OWNER; i++) await store.observe('p', 'a', exhausted, T0, null, { scope: null, model: `m${i}` });
    for (let i = 0; i < 3 * MAX_MODELS_PER_OWNER; i++) {
      const nothing = i % 2 === 0 ? obs('client_error') : obs('success');
      await store.observe('p', 'a', nothing, T0 + 1, null, { scope: null, model: `junk-${i}` });
    }
    expect([await admitFor('m0'), await admitFor('m63'), await admitFor('junk-0')]).toEqual([false, false, true]);
    // Still bounded: a model that writes, with no slot past its relevance, makes the least recently written go.
    await store.observe('p', 'a', exhausted, T0 + 1, null, { scope: null, model: 'm-new' });
    expect([await admitFor('m0'), await admitFor('m1'), await admitFor('m-new')]).toEqual([true, false, false]);
  });

  it('a full owner first forgets the slots whose relevance ended, then the least recently written', async () => {
    const store = new MemoryRateStateStore();
    const target = (model: string | null) => ({ scope: 'org', model });
    const member = cand('a', { scope: 'org' });
    const admitFor = async (model: string, nowMs: number) => (await store.admit({ ...request([member], nowMs), model })).ok;
    const scopeRemaining = async (nowMs: number) =>
      (await store.inspect('p', ['a'], nowMs, new Map([['a', 'org']])))[0]!.learned.requestsRemaining;
    // Oldest first: a long cooldown, the scope's own slot with a remaining count and no reset (relevant: the
    // provider did not say when it ends), 61 models exhausted for a minute, then a cooldown over at T0 + 100.
    await store.observe('p', 'a', obs('rate_limited', { cooldownUntilMs: T0 + 600_000 }), T0, null, target('gpt-4o'));
    await store.observe('p', 'a', obs('success', { learned: { requestsRemaining: 5 } }), T0, null, target(null));
    const exhausted = obs('success', { learned: { requestsLimit: 10, requestsRemaining: 0, requestsResetAtMs: T0 + 60_000 } });
    for (let i = 2; i < MAX_MODELS_PER_OWNER - 1; i++) await store.observe('p', 'a', exhausted, T0, null, target(`m${i}`));
    await store.observe('p', 'a', obs('rate_limited', { cooldownUntilMs: T0 + 100 }), T0, null, target('short'));

    // At T0 + 200 only 'short' has ended: it goes, the least recently written (gpt-4o) stays.
    await store.observe('p', 'a', exhausted, T0 + 200, null, target('new-1'));
    expect([await admitFor('gpt-4o', T0 + 201), await admitFor('m2', T0 + 201), await scopeRemaining(T0 + 201)]).toEqual([false, false, 5]);
    // Nothing ended any more: the least recently written go, one per new model (gpt-4o, then the scope's own slot).
    await store.observe('p', 'a', exhausted, T0 + 300, null, target('new-2'));
    expect([await admitFor('gpt-4o', T0 + 301), await scopeRemaining(T0 + 301)]).toEqual([true, 5]);
    await store.observe('p', 'a', exhausted, T0 + 400, null, target('new-3'));
    expect([await admitFor('m2', T0 + 401), await scopeRemaining(T0 + 401)]).toEqual([false, null]);
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
