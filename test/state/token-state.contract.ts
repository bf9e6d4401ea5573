// The token half of the RateStateStore contract (exact TPM by reserve-and-reconcile, token quotas;
// src/core/token-window.ts), run against every store like rate-state.contract.ts: memory, Redis, Redis Cluster.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { WINDOW_MS } from '../../src/core/capacity.js';
import { utcDayBounds } from '../../src/core/quota.js';
import type { AdmitCandidate, AdmitRequest, AdmitResult, QuotaSubject, RateStateStore } from '../../src/ports.js';
import { cand, obs, type ContractFactory } from './rate-state.contract.js';

const T0 = 1_800_000_000_000;
const DAY_END = utcDayBounds(T0)[2];
const LEASE_MS = 600_000;

export function tokenStateContract(name: string, factory: ContractFactory): void {
  describe(`RateStateStore tokens: ${name}`, () => {
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

    const key = (limits: Partial<QuotaSubject>, id = 'k1'): QuotaSubject => ({ scope: 'key', id: `${id}-${run}`, rpmLimit: null, rpdLimit: null, ...limits });
    const tenant = (limits: Partial<QuotaSubject>, id = 'acme'): QuotaSubject => ({
      scope: 'tenant',
      id: `${id}-${run}`,
      rpmLimit: null,
      rpdLimit: null,
      ...limits,
    });

    function admit(nowMs: number, tokens: number | undefined, extra: Partial<AdmitRequest> = {}, candidates: AdmitCandidate[] = [cand('a', { tpmLimit: 1000 })]): Promise<AdmitResult> {
      return store.admit({ pool, candidates, leastLoaded: false, nowMs, leaseMs: LEASE_MS, dayBounds: utcDayBounds(nowMs), tokens, ...extra });
    }

    async function leaseOf(result: Promise<AdmitResult>): Promise<string> {
      const r = await result;
      if (!r.ok) throw new Error(`expected an admission, got ${JSON.stringify(r)}`);
      return r.leaseId;
    }

    function reconcile(leaseId: string, admittedAtMs: number, delta: number, nowMs: number, quotas: QuotaSubject[] = [], accountId = 'a'): Promise<void> {
      return store.reconcileTokens!(pool, accountId, leaseId, admittedAtMs, delta, quotas, nowMs, utcDayBounds(admittedAtMs));
    }

    it('account tpm: reservations fill the window exactly; the refusal is exhausted with when enough tokens leave', async () => {
      await setup();
      expect((await admit(T0, 400)).ok).toBe(true);
      expect((await admit(T0 + 1000, 400)).ok).toBe(true);
      // 800 reserved: 200 more fit, 201 do not.
      expect(await admit(T0 + 2000, 201)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + WINDOW_MS });
      expect((await admit(T0 + 2000, 200)).ok).toBe(true);
      // Full: 500 more need the first two entries gone (T0 + 1000 + WINDOW_MS).
      expect(await admit(T0 + 3000, 500)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 1000 + WINDOW_MS });
      expect((await admit(T0 + WINDOW_MS, 400)).ok).toBe(true);
      expect((await admit(T0 + WINDOW_MS + 1, 1)).ok).toBe(false);
    });

    it('without tokens (absent or 0) a tpm limit admits exactly as before, and the request reserves nothing', async () => {
      await setup();
      expect((await admit(T0, 1000)).ok).toBe(true);
      expect((await admit(T0 + 1, undefined)).ok).toBe(true);
      expect((await admit(T0 + 2, 0)).ok).toBe(true);
      expect((await admit(T0 + 3, 1)).ok).toBe(false);
    });

    it('a request larger than the whole tpm limit is refused with no retry instant (it never fits by itself)', async () => {
      await setup();
      expect(await admit(T0, 1001)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: null });
    });

    it('reconcile down frees room at once; reconcile up consumes it; both at the admission position in the window', async () => {
      await setup();
      const first = await leaseOf(admit(T0, 600));
      await leaseOf(admit(T0 + 30_000, 400));
      expect((await admit(T0 + 31_000, 100)).ok).toBe(false);
      // The first request used 100 of its 600: 500 come back.
      await reconcile(first, T0, -500, T0 + 32_000);
      const third = await leaseOf(admit(T0 + 32_000, 500));
      expect((await admit(T0 + 32_001, 1)).ok).toBe(false);
      // The third used 300 more than reserved: the window is now over (100 + 400 + 800), nothing fits until the first
      // entry's 100 leave at T0 + WINDOW_MS, and even then 1300 - 100 > 1000.
      await reconcile(third, T0 + 32_000, 300, T0 + 33_000);
      expect(await admit(T0 + 33_000, 1)).toMatchObject({ ok: false, reason: 'exhausted' });
      // The reconciled figures leave with their admissions, not with the reconcile: at T0 + 30_000 + WINDOW_MS the
      // second's 400 go too, leaving the third's 800 -> 200 fit.
      expect((await admit(T0 + 30_000 + WINDOW_MS, 201)).ok).toBe(false);
      expect((await admit(T0 + 30_000 + WINDOW_MS, 200)).ok).toBe(true);
    });

    it('reconcile of an admission already out of the window, or unknown, changes nothing; a count never goes below 0', async () => {
      await setup();
      const old = await leaseOf(admit(T0, 500));
      await reconcile(old, T0, 400, T0 + WINDOW_MS + 1);
      await reconcile('no-such-lease', T0, 900, T0 + WINDOW_MS + 1);
      const fresh = await leaseOf(admit(T0 + WINDOW_MS + 1, 1000));
      await reconcile(fresh, T0 + WINDOW_MS + 1, -5000, T0 + WINDOW_MS + 2);
      expect((await admit(T0 + WINDOW_MS + 2, 1000)).ok).toBe(true);
      expect((await admit(T0 + WINDOW_MS + 3, 1)).ok).toBe(false);
    });

    it('provider-reported remaining tokens still cap admission, and a reservation counts against them', async () => {
      await setup();
      const candidates = [cand('a')];
      await store.observe(pool, 'a', obs('success', { learned: { tokensLimit: 1000, tokensRemaining: 300, tokensResetAtMs: T0 + 10_000 } }), T0);
      expect((await admit(T0 + 1, 300, {}, candidates)).ok).toBe(true);
      expect(await admit(T0 + 2, 1, {}, candidates)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 10_000 });
      expect((await admit(T0 + 10_000, 1, {}, candidates)).ok).toBe(true);
    });

    it('key tpm quota: refusal names the token minute and frees when enough tokens leave; reconcile gives room back', async () => {
      await setup();
      const quotas = [key({ tpmLimit: 1000 })];
      const candidates = [cand('a')];
      const first = await leaseOf(admit(T0, 700, { quotas }, candidates));
      expect(await admit(T0 + 1000, 400, { quotas }, candidates)).toEqual({
        ok: false,
        reason: 'quota',
        retryAtMs: T0 + WINDOW_MS,
        limit: { scope: 'key', window: 'token_minute' },
      });
      await reconcile(first, T0, -200, T0 + 2000, quotas);
      expect((await admit(T0 + 2000, 500, { quotas }, candidates)).ok).toBe(true);
      expect((await admit(T0 + 2001, 1, { quotas }, candidates)).ok).toBe(false);
    });

    it('tenant tpd quota: the day counts tokens, reconcile moves the admitted day, refusal frees at the day end', async () => {
      await setup();
      const quotas = [key({}), tenant({ tpdLimit: 5000 })];
      const candidates = [cand('a')];
      const first = await leaseOf(admit(T0, 3000, { quotas }, candidates));
      expect(await admit(T0 + WINDOW_MS * 5, 2001, { quotas }, candidates)).toEqual({
        ok: false,
        reason: 'quota',
        retryAtMs: DAY_END,
        limit: { scope: 'tenant', window: 'token_day' },
      });
      // Actual usage 1000: 2000 come back to the day.
      await reconcile(first, T0, -2000, T0 + WINDOW_MS * 6, quotas);
      expect((await admit(T0 + WINDOW_MS * 6, 4000, { quotas }, candidates)).ok).toBe(true);
      expect((await admit(T0 + WINDOW_MS * 7, 1, { quotas }, candidates)).ok).toBe(false);
      expect((await admit(DAY_END, 5000, { quotas }, candidates)).ok).toBe(true);
    });

    it('all or none with request quotas and accounts: a refused request reserves no tokens anywhere', async () => {
      await setup();
      const quotas = [key({ rpmLimit: 2, tpmLimit: 1000 }), tenant({ tpmLimit: 1000, tpdLimit: 10_000 })];
      const tight = [cand('a', { tpmLimit: 500 })];
      // The account refuses 600: neither quota is charged.
      expect(await admit(T0, 600, { quotas }, tight)).toMatchObject({ ok: false, reason: 'exhausted' });
      // The tenant's token minute refuses: the key's request and token windows stay untouched.
      const other = [key({}, 'k2'), quotas[1]!];
      expect((await admit(T0 + 1, 900, { quotas: other }, [cand('b')])).ok).toBe(true);
      expect(await admit(T0 + 2, 200, { quotas }, [cand('c')])).toMatchObject({ ok: false, reason: 'quota', limit: { scope: 'tenant', window: 'token_minute' } });
      // So the key still has both requests of its rpm and all 1000 tokens; the tenant has 100.
      expect((await admit(T0 + 3, 100, { quotas }, [cand('c')])).ok).toBe(true);
      expect((await admit(T0 + 4, 1, { quotas: [quotas[0]!] }, [cand('c')])).ok).toBe(true);
      expect(await admit(T0 + 5, 1, { quotas: [quotas[0]!] }, [cand('c')])).toMatchObject({ ok: false, reason: 'quota', limit: { scope: 'key', window: 'minute' } });
    });

    it('priority reserve: the own tpm window (with the request estimate) must keep the reserve; shed frees when tokens leave', async () => {
      await setup();
      expect((await admit(T0, 400)).ok).toBe(true);
      expect((await admit(T0 + 1000, 300)).ok).toBe(true);
      // 700 + 100 leaves 200/1000 = 0.2 < 0.25: shed until 700 + 100 <= 750, i.e. the first entry left.
      expect(await admit(T0 + 2000, 100, { reserve: 0.25 })).toEqual({ ok: false, reason: 'shed', retryAtMs: T0 + WINDOW_MS });
      expect((await admit(T0 + 2000, 50, { reserve: 0.25 })).ok).toBe(true);
      // Without a reserve the rest of the window is usable.
      expect((await admit(T0 + 3000, 250)).ok).toBe(true);
    });

    it('inspectQuota reports the token minute and day as reserved and reconciled', async () => {
      await setup();
      const t = tenant({ tpmLimit: 10_000, tpdLimit: 100_000 });
      const first = await leaseOf(admit(T0, 1000, { quotas: [t] }, [cand('a')]));
      await leaseOf(admit(T0 + 30_000, 500, { quotas: [t] }, [cand('a')]));
      await reconcile(first, T0, -600, T0 + 31_000, [t]);
      expect(await store.inspectQuota!(t, T0 + 31_000, utcDayBounds(T0))).toMatchObject({ tokenMinute: 900, tokenDay: 900 });
      // The first admission left the minute with its reconciled 400; the day keeps it.
      expect(await store.inspectQuota!(t, T0 + WINDOW_MS, utcDayBounds(T0))).toMatchObject({ tokenMinute: 500, tokenDay: 900 });
    });

    it('a token day counts exactly past 2^31 and 14 digits (BIGINT tpd_limit), through reconcile', async () => {
      await setup();
      const t = tenant({ tpdLimit: 9_007_199_254_740_991 });
      const big = 123_456_789_012_345;
      const lease = await leaseOf(admit(T0, big, { quotas: [t] }, [cand('a')]));
      await reconcile(lease, T0, -1, T0 + 1, [t]);
      expect(await store.inspectQuota!(t, T0 + 2, utcDayBounds(T0))).toMatchObject({ tokenDay: big - 1 });
      expect((await admit(T0 + 3, 1, { quotas: [t] }, [cand('a')])).ok).toBe(true);
      expect(await store.inspectQuota!(t, T0 + 4, utcDayBounds(T0))).toMatchObject({ tokenDay: big });
    });

    it('request quotas are checked before token quotas (the refusal names the request limit first)', async () => {
      await setup();
      const quotas = [key({ rpmLimit: 1, tpmLimit: 10 })];
      expect((await admit(T0, 10, { quotas }, [cand('a')])).ok).toBe(true);
      expect(await admit(T0 + 1, 5, { quotas }, [cand('a')])).toMatchObject({ ok: false, reason: 'quota', limit: { scope: 'key', window: 'minute' } });
    });
  });
}
