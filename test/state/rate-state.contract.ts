// One behavioural contract for every RateStateStore (memory, Redis). Time is driven through nowMs: the memory store
// takes it as is, the Redis store's test factory runs its scripts on the caller's clock (testUseRequestClock).
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CIRCUIT_BASE_MS,
  WINDOW_MS,
} from '../../src/core/capacity.js';
import type { LearnedLimits, Observation, ObservationOutcome } from '../../src/core/types.js';
import type { AdmitCandidate, AdmitResult, HealthChange, LearnedTarget, RateStateStore } from '../../src/ports.js';
import { DEFAULT_COOLDOWN_MS } from '../../src/core/response.js';

export interface ContractFactory {
  /** A store whose clock is the nowMs the test passes. Closed by the suite after each test. */
  create(options?: { onHealthChange?: (change: HealthChange) => void }): Promise<RateStateStore>;
}

const T0 = 1_800_000_000_000;
const LEASE_MS = 600_000;

const NO_LEARNED: LearnedLimits = {
  requestsLimit: null,
  requestsRemaining: null,
  requestsResetAtMs: null,
  tokensLimit: null,
  tokensRemaining: null,
  tokensResetAtMs: null,
};

export function cand(id: string, limits: Partial<Omit<AdmitCandidate, 'id'>> = {}): AdmitCandidate {
  return { id, rpmLimit: null, tpmLimit: null, maxConcurrency: null, ...limits };
}

export function obs(outcome: ObservationOutcome, extra: { cooldownUntilMs?: number | null; learned?: Partial<LearnedLimits> } = {}): Observation {
  const status = { success: 200, rate_limited: 429, quota_exhausted: 429, invalid_credential: 401, client_error: 400, server_error: 500 }[outcome];
  return { outcome, status, cooldownUntilMs: extra.cooldownUntilMs ?? null, learned: { ...NO_LEARNED, ...extra.learned } };
}

export function rateStateContract(name: string, factory: ContractFactory): void {
  describe(`RateStateStore contract: ${name}`, () => {
    let store: RateStateStore;
    let pool: string;
    const open: RateStateStore[] = [];

    async function setup(): Promise<void> {
      store = await factory.create();
      open.push(store);
      pool = `pool-${randomBytes(4).toString('hex')}`;
    }

    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    type AdmitOptions = { leastLoaded?: boolean; leaseMs?: number; model?: string | null };
    function admit(candidates: AdmitCandidate[], nowMs: number, options: AdmitOptions = {}): Promise<AdmitResult> {
      const model = options.model ?? null;
      return store.admit({ pool, candidates, leastLoaded: options.leastLoaded ?? false, nowMs, leaseMs: options.leaseMs ?? LEASE_MS, model });
    }

    async function admitted(candidates: AdmitCandidate[], nowMs: number, options: AdmitOptions = {}): Promise<{ accountId: string; leaseId: string }> {
      const result = await admit(candidates, nowMs, options);
      if (!result.ok) throw new Error(`expected an admission, got ${JSON.stringify(result)}`);
      return result;
    }

    /** observe() settles once the state holds the observation: the next read (here, or on any replica) sees it. */
    async function observe(accountId: string, observation: Observation, nowMs: number, target?: LearnedTarget): Promise<void> {
      await store.observe(pool, accountId, observation, nowMs, null, target);
    }

    async function view(accountId: string, nowMs: number) {
      const [v] = await store.inspect(pool, [accountId], nowMs);
      return v!;
    }

    describe('admission order and skipping', () => {
      it('admits the first candidate in strategy order and returns a lease', async () => {
        await setup();
        const r = await admitted([cand('a'), cand('b'), cand('c')], T0);
        expect(r.accountId).toBe('a');
        expect(r.leaseId).toMatch(/.+/);
      });

      it('skips a full candidate and admits the next', async () => {
        await setup();
        const pool3 = [cand('a', { maxConcurrency: 1 }), cand('b', { maxConcurrency: 1 }), cand('c')];
        expect((await admitted(pool3, T0)).accountId).toBe('a');
        expect((await admitted(pool3, T0)).accountId).toBe('b');
        expect((await admitted(pool3, T0)).accountId).toBe('c');
      });

      it('lease ids are unique', async () => {
        await setup();
        const ids = new Set<string>();
        for (let i = 0; i < 50; i++) ids.add((await admitted([cand('a')], T0 + i)).leaseId);
        expect(ids.size).toBe(50);
      });

      it('an empty candidate list is unhealthy with no retry time', async () => {
        await setup();
        expect(await admit([], T0)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: null });
      });
    });

    describe('RPM: exact sliding window', () => {
      it('admits rpmLimit in any 60 s and frees exactly when the oldest leaves the window', async () => {
        await setup();
        const c = [cand('a', { rpmLimit: 3 })];
        await admitted(c, T0);
        await admitted(c, T0 + 10_000);
        await admitted(c, T0 + 20_000);
        expect(await admit(c, T0 + 30_000)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + WINDOW_MS });
        expect(await admit(c, T0 + WINDOW_MS - 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + WINDOW_MS });
        await admitted(c, T0 + WINDOW_MS);
        expect(await admit(c, T0 + WINDOW_MS + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 10_000 + WINDOW_MS });
        expect((await view('a', T0 + WINDOW_MS + 1)).requestsInWindow).toBe(3);
      });

      it('counts admissions, not in-flight requests: releasing does not give RPM back', async () => {
        await setup();
        const c = [cand('a', { rpmLimit: 2 })];
        for (let i = 0; i < 2; i++) {
          const r = await admitted(c, T0 + i);
          store.release(pool, 'a', r.leaseId);
        }
        expect((await admit(c, T0 + 5)).ok).toBe(false);
      });

      it('never exceeds the limit in any 60 s window and never refuses below it (random timeline)', async () => {
        await setup();
        const limit = 5;
        const c = [cand('a', { rpmLimit: limit })];
        let seed = 42;
        const rand = (): number => {
          seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
          return seed / 2 ** 31;
        };
        const accepted: number[] = [];
        let t = T0;
        for (let i = 0; i < 150; i++) {
          t += Math.floor(rand() * 4_000);
          const r = await admit(c, t);
          const inWindow = accepted.filter((a) => a > t - WINDOW_MS).length;
          if (r.ok) {
            expect(inWindow).toBeLessThan(limit);
            accepted.push(t);
            store.release(pool, 'a', r.leaseId);
          } else {
            expect(inWindow).toBe(limit);
            expect(r.retryAtMs).toBe(accepted[accepted.length - limit]! + WINDOW_MS);
          }
        }
        for (const start of accepted) expect(accepted.filter((a) => a >= start && a < start + WINDOW_MS).length).toBeLessThanOrEqual(limit);
        expect(accepted.length).toBeGreaterThan(limit);
      });
    });

    describe('concurrency and leases', () => {
      it('holds max_concurrency and frees a slot on release', async () => {
        await setup();
        const c = [cand('a', { maxConcurrency: 2 })];
        const first = await admitted(c, T0);
        await admitted(c, T0);
        expect(await admit(c, T0)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: null });
        expect((await view('a', T0)).inFlight).toBe(2);
        store.release(pool, 'a', first.leaseId);
        expect((await admitted(c, T0 + 1)).accountId).toBe('a');
      });

      it('an unreleased lease stops counting after leaseMs (crashed holder)', async () => {
        await setup();
        const c = [cand('a', { maxConcurrency: 1 })];
        await admitted(c, T0, { leaseMs: 1_000 });
        expect((await admit(c, T0 + 999, { leaseMs: 1_000 })).ok).toBe(false);
        expect((await admitted(c, T0 + 1_000, { leaseMs: 1_000 })).accountId).toBe('a');
        expect((await view('a', T0 + 1_000)).inFlight).toBe(1);
      });

      it('release is idempotent and tolerates unknown leases and accounts', async () => {
        await setup();
        const c = [cand('a', { maxConcurrency: 2 })];
        const r1 = await admitted(c, T0);
        await admitted(c, T0);
        store.release(pool, 'a', r1.leaseId);
        store.release(pool, 'a', r1.leaseId);
        store.release(pool, 'a', 'no-such-lease');
        store.release(pool, 'nobody', 'no-such-lease');
        store.release(`other-${pool}`, 'a', r1.leaseId);
        expect((await view('a', T0)).inFlight).toBe(1);
      });

      it('observe with a lease id releases that slot in the same write, and the observation holds once it settles', async () => {
        await setup();
        const c = [cand('a', { maxConcurrency: 1 })];
        const r = await admitted(c, T0);
        await store.observe(pool, 'a', obs('rate_limited', { cooldownUntilMs: T0 + 5_000 }), T0 + 1, r.leaseId);
        const v = await view('a', T0 + 2);
        expect(v.inFlight).toBe(0);
        expect(v.cooldownUntilMs).toBe(T0 + 5_000);
        expect((await admitted(c, T0 + 5_000)).accountId).toBe('a');
      });

      it('renew keeps a live lease past its first expiry; an expired or released lease stays gone', async () => {
        await setup();
        const c = [cand('a', { maxConcurrency: 2 })];
        const kept = await admitted(c, T0, { leaseMs: 1_000 });
        const released = await admitted(c, T0, { leaseMs: 1_000 });
        store.release(pool, 'a', released.leaseId);
        // Renewed every 1/3 lease for 5 leases: still held, and the released one did not come back.
        let lastRenewalMs = T0;
        for (let t = T0 + 333; t <= T0 + 5_000; t += 333) {
          store.renew(pool, 'a', kept.leaseId, 1_000, t);
          lastRenewalMs = t;
        }
        store.renew(pool, 'a', released.leaseId, 1_000, T0 + 5_000);
        expect((await view('a', lastRenewalMs + 999)).inFlight).toBe(1);
        // Without renewals it expires one lease after the last one.
        expect((await view('a', lastRenewalMs + 1_000)).inFlight).toBe(0);
        // Too late: a renewal after expiry does not bring it back.
        store.renew(pool, 'a', kept.leaseId, 1_000, T0 + 7_000);
        expect((await view('a', T0 + 7_001)).inFlight).toBe(0);
      });
    });

    describe('cooldown (429)', () => {
      it('skips the account until the cooldown ends, and reports it as the retry time', async () => {
        await setup();
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 7_000 }), T0);
        expect((await admitted([cand('a'), cand('b')], T0 + 1)).accountId).toBe('b');
        expect(await admit([cand('a')], T0 + 6_999)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 7_000 });
        expect((await view('a', T0 + 1)).cooldownUntilMs).toBe(T0 + 7_000);
        expect((await admitted([cand('a'), cand('b')], T0 + 7_000)).accountId).toBe('a');
      });

      it('a shorter later cooldown does not shorten the current one', async () => {
        await setup();
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 10_000 }), T0);
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 2_000 }), T0 + 1);
        expect(await admit([cand('a')], T0 + 5_000)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 10_000 });
      });

      it('without a hint the default cooldown applies', async () => {
        await setup();
        await observe('a', obs('rate_limited'), T0);
        expect(await admit([cand('a')], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + DEFAULT_COOLDOWN_MS });
      });

      it('a 429 does not touch health', async () => {
        await setup();
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 1_000 }), T0);
        expect((await view('a', T0)).health).toBe('healthy');
      });
    });

    describe('invalid credential (401/403) and exhausted credit', () => {
      it('an invalid account is skipped; if it is the only one the pool is unhealthy', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0);
        expect((await admitted([cand('a'), cand('b')], T0 + 1)).accountId).toBe('b');
        expect(await admit([cand('a')], T0 + 1)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: null });
        expect((await view('a', T0 + 1)).invalid).toBe(true);
      });

      it('quota_exhausted holds the account out the same way', async () => {
        await setup();
        await observe('a', obs('quota_exhausted'), T0);
        expect(await admit([cand('a')], T0 + 60 * 60_000 - 1)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: null });
      });

      it('resetAccount (operator re-enabled) lifts the hold', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0);
        await store.resetAccount!(pool, 'a');
        expect((await admitted([cand('a')], T0 + 1)).accountId).toBe('a');
        expect((await view('a', T0 + 1)).invalid).toBe(false);
      });

      it('resetAccount also forgets cooldowns and learned provider limits (a day-long "0 remaining")', async () => {
        await setup();
        const dayMs = 24 * 3_600_000;
        await observe('a', obs('success', { learned: { requestsRemaining: 0, requestsResetAtMs: T0 + dayMs - 60_000 } }), T0);
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 60_000 }), T0);
        expect((await admit([cand('a')], T0 + 1)).ok).toBe(false);
        await store.resetAccount!(pool, 'a');
        expect((await admitted([cand('a')], T0 + 2)).accountId).toBe('a');
        const v = await view('a', T0 + 2);
        expect(v.cooldownUntilMs).toBeNull();
        expect(v.learned.requestsRemaining).toBeNull();
        expect(v.learned.requestsResetAtMs).toBeNull();
      });
    });

    describe('health and circuit (5xx)', () => {
      it('reports each health change: degraded, circuit opened, circuit closed', async () => {
        const changes: HealthChange[] = [];
        store = await factory.create({ onHealthChange: (change) => changes.push(change) });
        open.push(store);
        pool = `pool-${randomBytes(4).toString('hex')}`;
        for (let i = 0; i < 3; i++) await observe('a', obs('server_error'), T0 + i);
        await observe('a', obs('success'), T0 + CIRCUIT_BASE_MS + 10);
        await observe('a', obs('success'), T0 + CIRCUIT_BASE_MS + 20);
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(changes.map(({ from, to }) => `${from}->${to}`)).toEqual(['healthy->degraded', 'degraded->unhealthy', 'unhealthy->healthy']);
        expect(changes.every((change) => change.pool === pool && change.accountId === 'a')).toBe(true);
      });

      it('1-2 consecutive failures degrade, the 3rd opens the circuit for the base back-off', async () => {
        await setup();
        await observe('a', obs('server_error'), T0);
        expect((await view('a', T0)).health).toBe('degraded');
        expect((await admitted([cand('a')], T0)).accountId).toBe('a');
        await observe('a', obs('server_error'), T0);
        expect((await view('a', T0)).health).toBe('degraded');
        await observe('a', obs('server_error'), T0 + 10);
        const v = await view('a', T0 + 10);
        expect(v.health).toBe('unhealthy');
        expect(v.circuitOpenUntilMs).toBe(T0 + 10 + CIRCUIT_BASE_MS);
        expect(await admit([cand('a')], T0 + 20)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: T0 + 10 + CIRCUIT_BASE_MS });
        expect((await admitted([cand('a'), cand('b')], T0 + 20)).accountId).toBe('b');
      });

      it('a success in between resets the count', async () => {
        await setup();
        await observe('a', obs('server_error'), T0);
        await observe('a', obs('server_error'), T0);
        await observe('a', obs('success'), T0);
        await observe('a', obs('server_error'), T0);
        await observe('a', obs('server_error'), T0);
        expect((await view('a', T0)).health).toBe('degraded');
        expect((await admitted([cand('a')], T0)).accountId).toBe('a');
      });

      async function openCircuit(at: number): Promise<void> {
        for (let i = 0; i < 3; i++) await observe('a', obs('server_error'), at);
      }

      it('half-open lets exactly one probe through; its success closes the circuit', async () => {
        await setup();
        await openCircuit(T0);
        const reopenAt = T0 + CIRCUIT_BASE_MS;
        expect((await admit([cand('a')], reopenAt - 1)).ok).toBe(false);
        const probe = await admitted([cand('a')], reopenAt);
        expect(await admit([cand('a')], reopenAt + 1)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: null });
        expect((await admitted([cand('a'), cand('b')], reopenAt + 1)).accountId).toBe('b');
        await observe('a', obs('success'), reopenAt + 100);
        store.release(pool, 'a', probe.leaseId);
        expect((await view('a', reopenAt + 100)).health).toBe('healthy');
        await admitted([cand('a')], reopenAt + 101);
        await admitted([cand('a')], reopenAt + 101);
      });

      it('a failed probe reopens with a doubled back-off', async () => {
        await setup();
        await openCircuit(T0);
        const halfOpenAt = T0 + CIRCUIT_BASE_MS;
        const probe = await admitted([cand('a')], halfOpenAt);
        await observe('a', obs('server_error'), halfOpenAt + 50);
        store.release(pool, 'a', probe.leaseId);
        const reopenedUntil = halfOpenAt + 50 + 2 * CIRCUIT_BASE_MS;
        expect((await view('a', halfOpenAt + 50)).circuitOpenUntilMs).toBe(reopenedUntil);
        expect(await admit([cand('a')], reopenedUntil - 1)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: reopenedUntil });
        await admitted([cand('a')], reopenedUntil);
      });

      it('a probe that is released without an answer lets the next probe go', async () => {
        await setup();
        await openCircuit(T0);
        const probe = await admitted([cand('a')], T0 + CIRCUIT_BASE_MS);
        store.release(pool, 'a', probe.leaseId);
        await admitted([cand('a')], T0 + CIRCUIT_BASE_MS + 1);
      });

      it('a probe whose lease expires (crashed holder) lets the next probe go', async () => {
        await setup();
        await openCircuit(T0);
        await admitted([cand('a')], T0 + CIRCUIT_BASE_MS, { leaseMs: 1_000 });
        expect((await admit([cand('a')], T0 + CIRCUIT_BASE_MS + 999)).ok).toBe(false);
        await admitted([cand('a')], T0 + CIRCUIT_BASE_MS + 1_000);
      });

      it('client errors leave health alone', async () => {
        await setup();
        await observe('a', obs('server_error'), T0);
        await observe('a', obs('client_error'), T0);
        expect((await view('a', T0)).health).toBe('degraded');
      });
    });

    describe('learned limits', () => {
      it('remaining requests 0 blocks until the reset', async () => {
        await setup();
        await observe('a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: T0 + 3_000 } }), T0);
        expect(await admit([cand('a')], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 3_000 });
        await admitted([cand('a')], T0 + 3_000);
      });

      it('remaining tokens 0 blocks until the token reset', async () => {
        await setup();
        await observe('a', obs('success', { learned: { tokensLimit: 1000, tokensRemaining: 0, tokensResetAtMs: T0 + 4_000 } }), T0);
        expect(await admit([cand('a')], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 4_000 });
        await admitted([cand('a')], T0 + 4_000);
      });

      it('0 remaining with no reset time does not lock the account', async () => {
        await setup();
        await observe('a', obs('success', { learned: { requestsRemaining: 0 } }), T0);
        await admitted([cand('a')], T0 + 1);
      });

      it('own admissions count against the learned budget until the provider answers again', async () => {
        await setup();
        await observe('a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 2, requestsResetAtMs: T0 + 10_000 } }), T0);
        await admitted([cand('a')], T0 + 1);
        await admitted([cand('a')], T0 + 2);
        expect(await admit([cand('a')], T0 + 3)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 10_000 });
        expect((await view('a', T0 + 3)).learned.requestsRemaining).toBe(0);
      });

      it('unreported fields keep what was learned; inspect shows them', async () => {
        await setup();
        await observe('a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 50, requestsResetAtMs: T0 + 60_000 } }), T0);
        await observe('a', obs('success', { learned: { tokensLimit: 9000, tokensRemaining: 8000, tokensResetAtMs: T0 + 30_000 } }), T0 + 1);
        expect((await view('a', T0 + 1)).learned).toEqual({
          requestsLimit: 100,
          requestsRemaining: 50,
          requestsResetAtMs: T0 + 60_000,
          tokensLimit: 9000,
          tokensRemaining: 8000,
          tokensResetAtMs: T0 + 30_000,
        });
      });
    });

    describe('least-loaded', () => {
      it('picks the account with the most remaining capacity', async () => {
        await setup();
        const learned = (remaining: number) => ({ learned: { requestsLimit: 100, requestsRemaining: remaining, requestsResetAtMs: T0 + 60_000 } });
        await observe('a', obs('success', learned(10)), T0);
        await observe('b', obs('success', learned(50)), T0);
        await observe('c', obs('success', learned(30)), T0);
        const cs = [cand('a'), cand('b'), cand('c')];
        expect((await admitted(cs, T0 + 1, { leastLoaded: true })).accountId).toBe('b');
        expect((await admitted(cs, T0 + 1, { leastLoaded: false })).accountId).toBe('a');
      });

      it('counts own in-flight and window use, and keeps strategy order for ties', async () => {
        await setup();
        const cs = [cand('a', { maxConcurrency: 4 }), cand('b', { maxConcurrency: 4 }), cand('c', { maxConcurrency: 4 })];
        expect((await admitted(cs, T0, { leastLoaded: true })).accountId).toBe('a');
        expect((await admitted(cs, T0, { leastLoaded: true })).accountId).toBe('b');
        expect((await admitted(cs, T0, { leastLoaded: true })).accountId).toBe('c');
        expect((await admitted(cs, T0, { leastLoaded: true })).accountId).toBe('a');
      });

      it('skips the best-scored account when it is blocked', async () => {
        await setup();
        await observe('b', obs('rate_limited', { cooldownUntilMs: T0 + 5_000 }), T0);
        await observe('a', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 10, requestsResetAtMs: T0 + 60_000 } }), T0);
        expect((await admitted([cand('a'), cand('b')], T0 + 1, { leastLoaded: true })).accountId).toBe('a');
      });
    });

    describe('unhealthy versus exhausted', () => {
      it('invalid + open circuit -> unhealthy with the circuit reopening time', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0);
        for (let i = 0; i < 3; i++) await observe('b', obs('server_error'), T0);
        expect(await admit([cand('a'), cand('b')], T0 + 1)).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: T0 + CIRCUIT_BASE_MS });
      });

      it('invalid + cooling down -> exhausted with the cooldown end', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0);
        await observe('b', obs('rate_limited', { cooldownUntilMs: T0 + 9_000 }), T0);
        expect(await admit([cand('a'), cand('b')], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 9_000 });
      });

      it('retryAtMs is the earliest known free time across candidates', async () => {
        await setup();
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 20_000 }), T0);
        const rpm = cand('b', { rpmLimit: 1 });
        await admitted([rpm], T0);
        for (let i = 0; i < 3; i++) await observe('c', obs('server_error'), T0);
        expect(await admit([cand('a'), rpm, cand('c')], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + CIRCUIT_BASE_MS });
      });

      it('retryAtMs is unknown when a candidate waits only on in-flight requests', async () => {
        await setup();
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 20_000 }), T0);
        const busy = cand('b', { maxConcurrency: 1 });
        await admitted([busy], T0);
        expect(await admit([cand('a'), busy], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: null });
      });
    });

    describe('inspect', () => {
      it('reports a fresh account as healthy and idle', async () => {
        await setup();
        expect(await store.inspect(pool, ['fresh'], T0)).toEqual([
          {
            accountId: 'fresh',
            health: 'healthy',
            inFlight: 0,
            cooldownUntilMs: null,
            circuitOpenUntilMs: null,
            requestsInWindow: 0,
            invalid: false,
            learned: NO_LEARNED,
          },
        ]);
      });

      it('pools are independent', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0);
        const other = await store.admit({ pool: `${pool}-2`, candidates: [cand('a')], leastLoaded: false, nowMs: T0, leaseMs: LEASE_MS });
        expect(other.ok).toBe(true);
      });
    });

    describe('per-model learned state and quota scopes (src/core/learned-state.ts)', () => {
      const exhausted = (resetAtMs: number) => obs('success', { learned: { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: resetAtMs } });
      const m = (model: string | null, scope: string | null = null): LearnedTarget => ({ scope, model });

      it('one model exhausted (or cooling) leaves the account admitted for other models and for unknown ones', async () => {
        await setup();
        await observe('a', exhausted(T0 + 30_000), T0, m('gpt-4o'));
        await observe('b', obs('rate_limited', { cooldownUntilMs: T0 + 9_000 }), T0, m('gpt-4o'));
        expect(await admit([cand('a'), cand('b')], T0 + 1, { model: 'gpt-4o' })).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 9_000 });
        expect((await admitted([cand('a')], T0 + 1, { model: 'gpt-4o-mini' })).accountId).toBe('a');
        expect((await admitted([cand('b')], T0 + 1, { model: 'gpt-4o-mini' })).accountId).toBe('b');
        expect((await admitted([cand('a')], T0 + 1)).accountId).toBe('a');
        // The account's own view (no model) is untouched.
        expect((await view('a', T0 + 1)).learned).toEqual(NO_LEARNED);
        expect((await admitted([cand('a')], T0 + 30_000, { model: 'gpt-4o' })).accountId).toBe('a');
      });

      it('own admissions spend the requested model budget only', async () => {
        await setup();
        await observe('a', obs('success', { learned: { requestsLimit: 10, requestsRemaining: 1, requestsResetAtMs: T0 + 10_000 } }), T0, m('gpt-4o'));
        await admitted([cand('a')], T0 + 1, { model: 'gpt-4o' });
        expect(await admit([cand('a')], T0 + 2, { model: 'gpt-4o' })).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 10_000 });
        await admitted([cand('a')], T0 + 2, { model: 'o1' });
      });

      it('least-loaded compares the requested model remaining', async () => {
        await setup();
        const left = (n: number) => obs('success', { learned: { requestsLimit: 100, requestsRemaining: n, requestsResetAtMs: T0 + 60_000 } });
        await observe('a', left(5), T0, m('gpt-4o'));
        await observe('b', left(5), T0, m('o1'));
        expect((await admitted([cand('a'), cand('b')], T0 + 1, { leastLoaded: true, model: 'gpt-4o' })).accountId).toBe('b');
        expect((await admitted([cand('a'), cand('b')], T0 + 1, { leastLoaded: true, model: 'o1' })).accountId).toBe('a');
      });

      it('health, circuit and invalid hold stay per account whatever the model', async () => {
        await setup();
        await observe('a', obs('invalid_credential'), T0, m('gpt-4o'));
        for (let i = 0; i < 3; i++) await observe('b', obs('server_error'), T0, m('gpt-4o'));
        expect(await admit([cand('a'), cand('b')], T0 + 1, { model: 'o1' })).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: T0 + CIRCUIT_BASE_MS });
      });

      it('one 429 cools every sibling of the scope, and only them', async () => {
        await setup();
        const [a, b, c] = [cand('a', { scope: 'org/p1' }), cand('b', { scope: 'org/p1' }), cand('c', { scope: 'org/p2' })];
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 5_000 }), T0, m(null, 'org/p1'));
        expect(await admit([a, b], T0 + 1)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 5_000 });
        expect((await admitted([a, b, c], T0 + 1)).accountId).toBe('c');
        expect((await admitted([b, a], T0 + 5_000)).accountId).toBe('b');
      });

      it('with a model, the scope cools for that model only', async () => {
        await setup();
        const [a, b] = [cand('a', { scope: 'org/p1' }), cand('b', { scope: 'org/p1' })];
        await observe('b', obs('rate_limited', { cooldownUntilMs: T0 + 5_000 }), T0, m('gpt-4o', 'org/p1'));
        expect(await admit([a, b], T0 + 1, { model: 'gpt-4o' })).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 5_000 });
        expect((await admitted([a, b], T0 + 1, { model: 'o1' })).accountId).toBe('a');
        expect((await admitted([a, b], T0 + 1)).accountId).toBe('a');
      });

      it('learned remaining capacity is shared by the scope', async () => {
        await setup();
        const [a, b] = [cand('a', { scope: 's' }), cand('b', { scope: 's' })];
        await observe('a', obs('success', { learned: { requestsLimit: 10, requestsRemaining: 2, requestsResetAtMs: T0 + 60_000 } }), T0, m(null, 's'));
        expect((await admitted([a, b], T0 + 1)).accountId).toBe('a');
        expect((await admitted([b, a], T0 + 2)).accountId).toBe('b');
        expect(await admit([a, b], T0 + 3)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 60_000 });
      });

      it("the view of a scoped account shows its scope's cooldown and limits, what its admission reads", async () => {
        await setup();
        const learned = { requestsLimit: 10, requestsRemaining: 0, requestsResetAtMs: T0 + 60_000 };
        await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 5_000, learned }), T0, m(null, 'org/p1'));
        await observe('b', obs('server_error'), T0, m(null, 'org/p1'));
        const scopes = new Map([['a', 'org/p1'], ['b', 'org/p1']]);
        const views = await store.inspect(pool, ['a', 'b', 'c'], T0 + 1, scopes);
        expect(views.map((v) => [v.accountId, v.cooldownUntilMs, v.learned])).toEqual([
          ['a', T0 + 5_000, { ...NO_LEARNED, ...learned }],
          ['b', T0 + 5_000, { ...NO_LEARNED, ...learned }],
          ['c', null, NO_LEARNED],
        ]);
        // Health stays the account's own; without its scope the account's own slot is empty.
        expect(views.map((v) => v.health)).toEqual(['healthy', 'degraded', 'healthy']);
        expect((await view('a', T0 + 1)).cooldownUntilMs).toBeNull();
        expect((await store.inspect(pool, ['a'], T0 + 5_000, scopes))[0]!.cooldownUntilMs).toBeNull();
      });

      it('a live per-model cooldown survives observations for many other models that hold nothing live', async () => {
        await setup();
        const cooldownEndMs = T0 + 600_000;
        await observe('a', obs('rate_limited', { cooldownUntilMs: cooldownEndMs }), T0, m('gpt-4o'));
        // 140 other models (more than twice MAX_MODELS_PER_OWNER = 64): half answered with nothing to learn (404,
        // or 200 without rate-limit headers), half with a 429 whose cooldown is over before the next model arrives.
        let t = T0;
        for (let i = 0; i < 140; i++) {
          t += 10;
          const model = `junk-${i}`;
          if (i % 4 === 0) await observe('a', obs('client_error'), t, m(model));
          else if (i % 4 === 2) await observe('a', obs('success'), t, m(model));
          else await observe('a', obs('rate_limited', { cooldownUntilMs: t + 5 }), t, m(model));
        }
        const refused = { ok: false, reason: 'exhausted', retryAtMs: cooldownEndMs };
        expect(await admit([cand('a')], t + 1, { model: 'gpt-4o' })).toEqual(refused);
        expect(await admit([cand('a')], cooldownEndMs - 1, { model: 'gpt-4o' })).toEqual(refused);
        // The other models and the account itself were never held.
        expect((await admitted([cand('a')], t + 1, { model: 'junk-1' })).accountId).toBe('a');
        expect((await admitted([cand('a')], t + 1)).accountId).toBe('a');
        expect((await admitted([cand('a')], cooldownEndMs, { model: 'gpt-4o' })).accountId).toBe('a');
      });

      it('a scope of one behaves exactly like no scope', async () => {
        const run = async (scope: string | null): Promise<unknown[]> => {
          await setup();
          const a = cand('a', { scope, rpmLimit: 3 });
          const out: unknown[] = [];
          const strip = (r: AdmitResult) => (r.ok ? r.accountId : r);
          await observe('a', obs('success', { learned: { requestsLimit: 10, requestsRemaining: 2, requestsResetAtMs: T0 + 60_000 } }), T0, m(null, scope));
          for (const t of [T0 + 1, T0 + 2, T0 + 3]) out.push(strip(await admit([a], t)));
          await observe('a', obs('rate_limited', { cooldownUntilMs: T0 + 70_000 }), T0 + 4, m(null, scope));
          for (const t of [T0 + 61_000, T0 + 70_001]) out.push(strip(await admit([a], t)));
          await observe('a', obs('server_error'), T0 + 70_002, m(null, scope));
          out.push(strip(await admit([a], T0 + 70_003)), (await view('a', T0 + 70_003)).health);
          return out;
        };
        const solo = await run('solo');
        expect(solo).toEqual(await run(null));
        expect(solo[2]).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T0 + 60_000 });
      });
    });
  });
}
