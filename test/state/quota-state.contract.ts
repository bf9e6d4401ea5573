// The quota and priority-reserve half of the RateStateStore contract (src/core/quota.ts, capacity.ts
// reserveShortfall), run against every store like rate-state.contract.ts: memory, Redis, Redis Cluster.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { WINDOW_MS } from '../../src/core/capacity.js';
import { zonedDayBounds } from '../../src/core/quota.js';
import type { AdmitCandidate, AdmitRequest, AdmitResult, QuotaSubject, RateStateStore } from '../../src/ports.js';
import { cand, obs, type ContractFactory } from './rate-state.contract.js';

// 2027-01-15T08:00:00Z; in Berlin (+1) the day runs 2027-01-14T23:00Z .. 2027-01-15T23:00Z.
const T0 = 1_800_000_000_000;
const BERLIN_DAY_END = Date.parse('2027-01-15T23:00:00Z');
const LEASE_MS = 600_000;

export function quotaStateContract(name: string, factory: ContractFactory): void {
  describe(`RateStateStore quotas and reserves: ${name}`, () => {
    let store: RateStateStore;
    let pool: string;
    let run: string;
    const open: RateStateStore[] = [];

    async function setup(): Promise<void> {
      store = await factory.create();
      open.push(store);
      run = randomBytes(4).toString('hex');
      pool = `pool-${run}`;
    }

    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    const key = (rpmLimit: number | null, rpdLimit: number | null, id = 'k1'): QuotaSubject => ({ scope: 'key', id: `${id}-${run}`, rpmLimit, rpdLimit });
    const tenant = (rpmLimit: number | null, rpdLimit: number | null, id = 'acme'): QuotaSubject => ({ scope: 'tenant', id: `${id}-${run}`, rpmLimit, rpdLimit });

    function admit(nowMs: number, extra: Partial<AdmitRequest> = {}, candidates: AdmitCandidate[] = [cand('a')]): Promise<AdmitResult> {
      return store.admit({
        pool,
        candidates,
        leastLoaded: false,
        nowMs,
        leaseMs: LEASE_MS,
        dayBounds: zonedDayBounds(nowMs, 'Europe/Berlin'),
        ...extra,
      });
    }

    it('key rpm: exactly the limit in a sliding minute; the refusal names the key minute and when it frees', async () => {
      await setup();
      const quotas = [key(3, null)];
      for (let i = 0; i < 3; i++) expect((await admit(T0 + i * 1000, { quotas })).ok).toBe(true);
      expect(await admit(T0 + 5000, { quotas })).toEqual({ ok: false, reason: 'quota', retryAtMs: T0 + WINDOW_MS, limit: { scope: 'key', window: 'minute' } });
      expect((await admit(T0 + WINDOW_MS, { quotas })).ok).toBe(true);
      expect((await admit(T0 + WINDOW_MS + 1, { quotas })).ok).toBe(false);
    });

    it('tenant rpd: the calendar day of the zone, shared by every key of the tenant, free again at the next day', async () => {
      await setup();
      const t = tenant(null, 2);
      expect((await admit(T0, { quotas: [key(null, null, 'k1'), t] })).ok).toBe(true);
      expect((await admit(T0 + 1, { quotas: [key(null, null, 'k2'), t] })).ok).toBe(true);
      expect(await admit(T0 + 2, { quotas: [key(null, null, 'k3'), t] })).toEqual({
        ok: false,
        reason: 'quota',
        retryAtMs: BERLIN_DAY_END,
        limit: { scope: 'tenant', window: 'day' },
      });
      expect((await admit(BERLIN_DAY_END - 1, { quotas: [t] })).ok).toBe(false);
      expect((await admit(BERLIN_DAY_END, { quotas: [t] })).ok).toBe(true);
    });

    it('all or none: a request the accounts refuse is charged to no quota, and a quota refusal touches no account', async () => {
      await setup();
      const busy = cand('a', { maxConcurrency: 1 });
      const quotas = [key(1, 1), tenant(1, 1)];
      const holder = await admit(T0, {}, [busy]);
      expect(holder.ok).toBe(true);
      expect(await admit(T0 + 1, { quotas }, [busy])).toMatchObject({ ok: false, reason: 'exhausted' });
      if (holder.ok) store.release(pool, 'a', holder.leaseId);
      // The refused request left both quotas untouched: this one fits.
      expect((await admit(T0 + 2, { quotas }, [busy])).ok).toBe(true);
      const [before] = await store.inspect(pool, ['b'], T0 + 3);
      // Over quota now: refused before any account is looked at.
      expect(await admit(T0 + 3, { quotas }, [cand('b')])).toMatchObject({ ok: false, reason: 'quota', limit: { scope: 'key', window: 'minute' } });
      const [after] = await store.inspect(pool, ['b'], T0 + 3);
      expect(after).toEqual(before);
      expect(after!.requestsInWindow).toBe(0);
    });

    it('a tenant refusal does not charge the key', async () => {
      await setup();
      const t = tenant(null, 1);
      expect((await admit(T0, { quotas: [key(null, null, 'other'), t] })).ok).toBe(true);
      expect(await admit(T0 + 1, { quotas: [key(5, 5), t] })).toMatchObject({ ok: false, limit: { scope: 'tenant', window: 'day' } });
      if (store.inspectQuota) expect(await store.inspectQuota(key(5, 5), T0 + 2, zonedDayBounds(T0 + 2, 'Europe/Berlin'))).toMatchObject({ minute: 0, day: 0 });
    });

    it('inspectQuota reports the minute window and the day', async () => {
      await setup();
      const q = key(10, 10);
      for (let i = 0; i < 3; i++) await admit(T0 + i, { quotas: [q] });
      expect(store.inspectQuota).toBeDefined();
      const usage = await store.inspectQuota!(q, T0 + 10, zonedDayBounds(T0 + 10, 'Europe/Berlin'));
      expect(usage).toEqual({ minute: 3, day: 3, dayStartMs: Date.parse('2027-01-14T23:00:00Z'), dayEndMs: BERLIN_DAY_END, tokenMinute: 0, tokenDay: 0 });
      expect(await store.inspectQuota!(q, T0 + WINDOW_MS + 10, zonedDayBounds(T0 + WINDOW_MS + 10, 'Europe/Berlin'))).toMatchObject({ minute: 0, day: 3 });
    });

    it('ids with braces and percent signs stay separate subjects', async () => {
      await setup();
      expect((await admit(T0, { quotas: [key(1, null, '{x}')] })).ok).toBe(true);
      expect((await admit(T0, { quotas: [key(1, null, '%7Bx%7D')] })).ok).toBe(true);
      expect((await admit(T0, { quotas: [key(1, null, '{x}')] })).ok).toBe(false);
    });

    describe('priority reserve', () => {
      it('a pool the provider reports low sheds a reserve-0.25 request and admits a reserve-0 one; both once capacity is back', async () => {
        await setup();
        await store.observe(pool, 'a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 10, requestsResetAtMs: T0 + 30_000 } }), T0);
        expect(await admit(T0 + 1, { reserve: 0.25 })).toEqual({ ok: false, reason: 'shed', retryAtMs: T0 + 30_000 });
        expect((await admit(T0 + 2, { reserve: 0 })).ok).toBe(true);
        await store.observe(pool, 'a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 90, requestsResetAtMs: T0 + 90_000 } }), T0 + 3);
        expect((await admit(T0 + 4, { reserve: 0.25 })).ok).toBe(true);
        expect((await admit(T0 + 5, { reserve: 0 })).ok).toBe(true);
      });

      it('own rpm window: a reserve-0.25 request gets 3 of 4 slots, a reserve-0 one the last; shedding counts nowhere', async () => {
        await setup();
        const acc = cand('a', { rpmLimit: 4 });
        const quotas = [key(100, 100)];
        for (let i = 0; i < 3; i++) expect((await admit(T0 + i, { reserve: 0.25, quotas }, [acc])).ok).toBe(true);
        expect(await admit(T0 + 10, { reserve: 0.25, quotas }, [acc])).toEqual({ ok: false, reason: 'shed', retryAtMs: T0 + WINDOW_MS });
        const [view] = await store.inspect(pool, ['a'], T0 + 11);
        expect(view!.requestsInWindow).toBe(3);
        if (store.inspectQuota) expect(await store.inspectQuota(quotas[0]!, T0 + 11, zonedDayBounds(T0 + 11, 'Europe/Berlin'))).toMatchObject({ minute: 3, day: 3 });
        expect((await admit(T0 + 12, { reserve: 0, quotas }, [acc])).ok).toBe(true);
      });

      it('a second account above the reserve is taken instead of shedding', async () => {
        await setup();
        await store.observe(pool, 'a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 5, requestsResetAtMs: T0 + 30_000 } }), T0);
        expect(await admit(T0 + 1, { reserve: 0.1 }, [cand('a'), cand('b')])).toMatchObject({ ok: true, accountId: 'b' });
      });

      it('concurrency: shed with an unknown reset', async () => {
        await setup();
        const acc = cand('a', { maxConcurrency: 2 });
        expect((await admit(T0, {}, [acc])).ok).toBe(true);
        expect(await admit(T0 + 1, { reserve: 0.5 }, [acc])).toEqual({ ok: false, reason: 'shed', retryAtMs: null });
      });
    });
  });
}
