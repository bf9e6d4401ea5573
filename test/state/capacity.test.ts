// Table tests of the pure per-account state machine (src/core/capacity.ts). No stores, no clock, no mocks.
import { describe, expect, it } from 'vitest';
import { applyObservation } from '../../src/core/account-observation.js';
import {
  type AccountState,
  admitFirst,
  CIRCUIT_BASE_MS,
  CIRCUIT_MAX_MS,
  type Capacity,
  capacityOf,
  circuitBackoffMs,
  divideLimit,
  INVALID_HOLD_MS,
  newAccountState,
  recordAdmission,
  releaseLease,
  remainingScore,
  RequestLog,
  UNLIMITED_LOG_CAP,
  viewOf,
  WINDOW_MS,
} from '../../src/core/capacity.js';
import type { LearnedLimits, ObservationOutcome } from '../../src/core/types.js';
import type { AdmitCandidate, AdmitResult } from '../../src/ports.js';
import { cand, obs } from './rate-state.contract.js';
import { DEFAULT_COOLDOWN_MS } from '../../src/core/response.js';

const T = 1_000_000;

type Setup = (s: AccountState) => void;

function stateWith(...setups: Setup[]): AccountState {
  const s = newAccountState();
  for (const setup of setups) setup(s);
  return s;
}

const admitsAt = (...times: number[]): Setup => (s) => times.forEach((t, i) => recordAdmission(s, cand('x'), `w${i}`, t, 1));
const leases = (...expiries: number[]): Setup => (s) => expiries.forEach((e, i) => s.leases.set(`l${i}`, e));
const learned = (l: Partial<LearnedLimits>): Setup => (s) => Object.assign(s.learned, l);
const fields = (f: Partial<Omit<AccountState, 'requestLog' | 'leases' | 'learned'>>): Setup => (s) => Object.assign(s, f);

describe('circuitBackoffMs', () => {
  it.each([
    [0, 5_000],
    [1, 10_000],
    [2, 20_000],
    [5, 160_000],
    [6, CIRCUIT_MAX_MS],
    [50, CIRCUIT_MAX_MS],
  ])('opening #%i lasts %i ms', (openCount, expected) => {
    expect(circuitBackoffMs(openCount)).toBe(expected);
  });
});

describe('divideLimit', () => {
  it.each([
    [null, 3, null],
    [7, 3, 2],
    [2, 3, 1],
    [10, 1, 10],
    [10, 0, 10],
    [0, 3, 0],
  ] as const)('%s / %s -> %s', (limit, divisor, expected) => {
    expect(divideLimit(limit, divisor)).toBe(expected);
  });
});

describe('RequestLog', () => {
  it('prunes from the oldest end, wraps around and grows without losing order', () => {
    const log = new RequestLog();
    for (let t = 1; t <= 6; t++) log.push(t, 100);
    log.prune(3);
    expect([log.size, log.oldest(), log.newest()]).toEqual([3, 4, 6]);
    for (let t = 7; t <= 20; t++) log.push(t, 100);
    expect([log.size, log.oldest(), log.newest()]).toEqual([17, 4, 20]);
    log.prune(19);
    expect([log.size, log.oldest()]).toEqual([1, 20]);
  });

  it('drops the oldest beyond its cap, and records a clock step back as the newest instant', () => {
    const log = new RequestLog();
    for (let t = 1; t <= 5; t++) log.push(t, 3);
    expect([log.size, log.oldest(), log.newest()]).toEqual([3, 3, 5]);
    log.push(2, 3);
    expect([log.size, log.oldest(), log.newest()]).toEqual([3, 4, 5]);
  });

  it('is empty-safe', () => {
    const log = new RequestLog();
    log.prune(10);
    expect([log.size, Number.isNaN(log.oldest())]).toEqual([0, true]);
  });
});

describe('capacityOf', () => {
  const none = cand('a');
  const cases: Array<[string, Setup[], AdmitCandidate, Capacity]> = [
    ['fresh account', [], none, { ok: true }],
    ['invalid hold', [fields({ invalidUntilMs: T + 1 })], none, { ok: false, reason: 'invalid', freeAtMs: null }],
    ['invalid hold over', [fields({ invalidUntilMs: T })], none, { ok: true }],
    ['invalid beats everything', [fields({ invalidUntilMs: T + 1, circuitOpenUntilMs: T + 5, cooldownUntilMs: T + 9 })], none, { ok: false, reason: 'invalid', freeAtMs: null }],
    ['circuit open', [fields({ circuitOpenUntilMs: T + 5, health: 'unhealthy', cooldownUntilMs: T + 9 })], none, { ok: false, reason: 'circuit_open', freeAtMs: T + 5 }],
    ['half-open, no probe', [fields({ circuitOpenUntilMs: T, health: 'unhealthy' })], none, { ok: true }],
    ['half-open, probe in flight', [fields({ circuitOpenUntilMs: T - 1, halfOpenProbeLeaseId: 'l0' }), leases(T + 100)], none, { ok: false, reason: 'circuit_open', freeAtMs: null }],
    ['half-open, probe lease expired', [fields({ circuitOpenUntilMs: T - 1, halfOpenProbeLeaseId: 'l0' }), leases(T)], none, { ok: true }],
    ['cooldown', [fields({ cooldownUntilMs: T + 7_000 })], none, { ok: false, reason: 'cooldown', freeAtMs: T + 7_000 }],
    ['cooldown over', [fields({ cooldownUntilMs: T })], none, { ok: true }],
    ['provider requests 0 until reset', [learned({ requestsRemaining: 0, requestsResetAtMs: T + 3 })], none, { ok: false, reason: 'provider_requests', freeAtMs: T + 3 }],
    ['provider requests 0, reset passed', [learned({ requestsRemaining: 0, requestsResetAtMs: T })], none, { ok: true }],
    ['provider requests 0, reset unknown', [learned({ requestsRemaining: 0 })], none, { ok: true }],
    ['provider requests left', [learned({ requestsRemaining: 1, requestsResetAtMs: T + 3 })], none, { ok: true }],
    ['provider tokens 0 until reset', [learned({ tokensRemaining: 0, tokensResetAtMs: T + 4 })], none, { ok: false, reason: 'tpm', freeAtMs: T + 4 }],
    ['rpm full', [admitsAt(T - 50_000, T - 10)], cand('a', { rpmLimit: 2 }), { ok: false, reason: 'rpm', freeAtMs: T - 50_000 + WINDOW_MS }],
    ['rpm: oldest exactly one window ago has left', [admitsAt(T - WINDOW_MS, T - 10)], cand('a', { rpmLimit: 2 }), { ok: true }],
    ['rpm 0', [], cand('a', { rpmLimit: 0 }), { ok: false, reason: 'rpm', freeAtMs: null }],
    ['concurrency full', [leases(T + 1, T + 2)], cand('a', { maxConcurrency: 2 }), { ok: false, reason: 'concurrency', freeAtMs: null }],
    ['concurrency: expired leases do not count', [leases(T, T + 2)], cand('a', { maxConcurrency: 2 }), { ok: true }],
    ['no limits, busy', [admitsAt(T - 1, T - 1, T - 1), leases(T + 5, T + 5)], none, { ok: true }],
  ];
  it.each(cases)('%s', (_name, setups, candidate, expected) => {
    expect(capacityOf(stateWith(...setups), candidate, T)).toEqual(expected);
  });
});

describe('remainingScore', () => {
  const cases: Array<[string, Setup[], AdmitCandidate, number]> = [
    ['nothing known', [], cand('a'), 1],
    ['learned requests 25/100', [learned({ requestsLimit: 100, requestsRemaining: 25, requestsResetAtMs: T + 1 })], cand('a'), 0.25],
    ['learned requests after reset are stale', [learned({ requestsLimit: 100, requestsRemaining: 25, requestsResetAtMs: T })], cand('a'), 1],
    ['learned without a limit uses rpm_limit', [learned({ requestsRemaining: 30 })], cand('a', { rpmLimit: 60 }), 0.5],
    ['learned without any limit: only 0 is informative', [learned({ requestsRemaining: 30 })], cand('a'), 1],
    ['learned tokens 10/1000', [learned({ tokensLimit: 1000, tokensRemaining: 10, tokensResetAtMs: T + 1 })], cand('a'), 0.01],
    ['own window 3 of 4', [admitsAt(T - 3, T - 2, T - 1)], cand('a', { rpmLimit: 4 }), 0.25],
    ['own concurrency 1 of 4', [leases(T + 9)], cand('a', { maxConcurrency: 4 }), 0.75],
    ['tightest wins', [learned({ requestsLimit: 10, requestsRemaining: 9 }), leases(T + 9, T + 9)], cand('a', { maxConcurrency: 4 }), 0.5],
    ['over-used clamps at 0', [leases(T + 9, T + 9, T + 9)], cand('a', { maxConcurrency: 2 }), 0],
  ];
  it.each(cases)('%s', (_name, setups, candidate, expected) => {
    expect(remainingScore(stateWith(...setups), candidate, T)).toBeCloseTo(expected, 10);
  });
});

describe('applyObservation', () => {
  type Step = [outcome: ObservationOutcome, atMs: number];
  type Expect = Pick<AccountState, 'health' | 'consecutiveFailures' | 'circuitOpenUntilMs' | 'openCount'>;
  const cases: Array<[string, Step[], Expect]> = [
    ['one 5xx degrades', [['server_error', T]], { health: 'degraded', consecutiveFailures: 1, circuitOpenUntilMs: 0, openCount: 0 }],
    ['two 5xx degrade', [['server_error', T], ['server_error', T]], { health: 'degraded', consecutiveFailures: 2, circuitOpenUntilMs: 0, openCount: 0 }],
    ['three 5xx open', [['server_error', T], ['server_error', T], ['server_error', T + 1]], { health: 'unhealthy', consecutiveFailures: 3, circuitOpenUntilMs: T + 1 + CIRCUIT_BASE_MS, openCount: 1 }],
    ['late 5xx while open changes nothing', [['server_error', T], ['server_error', T], ['server_error', T], ['server_error', T + 100]], { health: 'unhealthy', consecutiveFailures: 4, circuitOpenUntilMs: T + CIRCUIT_BASE_MS, openCount: 1 }],
    ['failed probe doubles', [['server_error', T], ['server_error', T], ['server_error', T], ['server_error', T + CIRCUIT_BASE_MS]], { health: 'unhealthy', consecutiveFailures: 4, circuitOpenUntilMs: T + 3 * CIRCUIT_BASE_MS, openCount: 2 }],
    ['success closes and resets back-off', [['server_error', T], ['server_error', T], ['server_error', T], ['success', T + CIRCUIT_BASE_MS]], { health: 'healthy', consecutiveFailures: 0, circuitOpenUntilMs: 0, openCount: 0 }],
    ['success between failures resets the count', [['server_error', T], ['server_error', T], ['success', T], ['server_error', T]], { health: 'degraded', consecutiveFailures: 1, circuitOpenUntilMs: 0, openCount: 0 }],
    ['4xx and 429 leave health alone', [['server_error', T], ['client_error', T], ['rate_limited', T]], { health: 'degraded', consecutiveFailures: 1, circuitOpenUntilMs: 0, openCount: 0 }],
  ];
  it.each(cases)('%s', (_name, steps, expected) => {
    const s = newAccountState();
    for (const [outcome, at] of steps) applyObservation(s, obs(outcome), at);
    expect({ health: s.health, consecutiveFailures: s.consecutiveFailures, circuitOpenUntilMs: s.circuitOpenUntilMs, openCount: s.openCount }).toEqual(expected);
  });

  it('back-off grows with every failed probe and stops at the cap', () => {
    const s = newAccountState();
    let now = T;
    for (let i = 0; i < 3; i++) applyObservation(s, obs('server_error'), now);
    const periods: number[] = [];
    for (let i = 0; i < 9; i++) {
      periods.push(s.circuitOpenUntilMs - now);
      now = s.circuitOpenUntilMs;
      applyObservation(s, obs('server_error'), now);
    }
    expect(periods).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  });

  it.each([
    ['hinted', T + 7_000, 0, T + 7_000],
    ['no hint: default', null, 0, T + DEFAULT_COOLDOWN_MS],
    ['never shortens', T + 1_000, T + 9_000, T + 9_000],
  ] as const)('429 cooldown %s', (_name, hint, existing, expected) => {
    const s = stateWith(fields({ cooldownUntilMs: existing }));
    applyObservation(s, obs('rate_limited', { cooldownUntilMs: hint }), T);
    expect(s.cooldownUntilMs).toBe(expected);
  });

  it.each(['invalid_credential', 'quota_exhausted'] as const)('%s holds the account out for INVALID_HOLD_MS', (outcome) => {
    const s = newAccountState();
    applyObservation(s, obs(outcome), T);
    expect(s.invalidUntilMs).toBe(T + INVALID_HOLD_MS);
    expect(viewOf('a', s, T).invalid).toBe(true);
  });

  it('merges learned limits: reported fields replace, unreported keep', () => {
    const s = stateWith(learned({ requestsLimit: 100, requestsRemaining: 50, tokensLimit: 10 }));
    applyObservation(s, obs('success', { learned: { requestsRemaining: 40, tokensRemaining: 5 } }), T);
    expect(s.learned).toEqual({ requestsLimit: 100, requestsRemaining: 40, requestsResetAtMs: null, tokensLimit: 10, tokensRemaining: 5, tokensResetAtMs: null });
  });
});

describe('admitFirst', () => {
  type World = Record<string, Setup[]>;
  const run = (world: World, candidates: AdmitCandidate[], leastLoaded = false): AdmitResult => {
    const states = new Map(Object.entries(world).map(([id, setups]) => [id, stateWith(...setups)]));
    return admitFirst((id) => states.get(id) ?? states.set(id, newAccountState()).get(id)!, { pool: 'p', candidates, leastLoaded, nowMs: T, leaseMs: 1_000 }, 'lease-1');
  };
  const cases: Array<[string, World, AdmitCandidate[], boolean, AdmitResult]> = [
    ['first with room', {}, [cand('a'), cand('b')], false, { ok: true, accountId: 'a', leaseId: 'lease-1' }],
    ['skips blocked', { a: [fields({ cooldownUntilMs: T + 1 })] }, [cand('a'), cand('b')], false, { ok: true, accountId: 'b', leaseId: 'lease-1' }],
    ['least-loaded reorders', { a: [learned({ requestsLimit: 10, requestsRemaining: 1 })] }, [cand('a'), cand('b')], true, { ok: true, accountId: 'b', leaseId: 'lease-1' }],
    ['least-loaded ties keep order', {}, [cand('a'), cand('b')], true, { ok: true, accountId: 'a', leaseId: 'lease-1' }],
    ['no candidates', {}, [], false, { ok: false, reason: 'unhealthy', retryAtMs: null }],
    ['all invalid', { a: [fields({ invalidUntilMs: T + 1 })] }, [cand('a')], false, { ok: false, reason: 'unhealthy', retryAtMs: null }],
    ['invalid + open circuit', { a: [fields({ invalidUntilMs: T + 1 })], b: [fields({ circuitOpenUntilMs: T + 50 })] }, [cand('a'), cand('b')], false, { ok: false, reason: 'unhealthy', retryAtMs: T + 50 }],
    ['open circuit + cooldown', { a: [fields({ circuitOpenUntilMs: T + 50 })], b: [fields({ cooldownUntilMs: T + 70 })] }, [cand('a'), cand('b')], false, { ok: false, reason: 'exhausted', retryAtMs: T + 50 }],
    ['earliest of cooldown and window', { a: [fields({ cooldownUntilMs: T + 70 })], b: [admitsAt(T - WINDOW_MS + 20)] }, [cand('a'), cand('b', { rpmLimit: 1 })], false, { ok: false, reason: 'exhausted', retryAtMs: T + 20 }],
    ['unknown when a slot waits on in-flight', { a: [fields({ cooldownUntilMs: T + 70 })], b: [leases(T + 10)] }, [cand('a'), cand('b', { maxConcurrency: 1 })], false, { ok: false, reason: 'exhausted', retryAtMs: null }],
  ];
  it.each(cases)('%s', (_name, world, candidates, leastLoaded, expected) => {
    expect(run(world, candidates, leastLoaded)).toEqual(expected);
  });

  it('records the admission: window, lease, probe, learned budget', () => {
    const s = stateWith(fields({ circuitOpenUntilMs: T - 1, health: 'unhealthy' }), learned({ requestsRemaining: 3, requestsResetAtMs: T + 10 }));
    const result = admitFirst(() => s, { pool: 'p', candidates: [cand('a')], leastLoaded: false, nowMs: T, leaseMs: 500 }, 'probe');
    expect(result.ok).toBe(true);
    expect([s.requestLog.size, s.leases.get('probe'), s.halfOpenProbeLeaseId, s.learned.requestsRemaining]).toEqual([1, T + 500, 'probe', 2]);
    releaseLease(s, 'probe');
    releaseLease(s, 'probe');
    expect(s.leases.size).toBe(0);
  });

  it('bounds the log of an account without rpm_limit', () => {
    const s = newAccountState();
    for (let i = 0; i < UNLIMITED_LOG_CAP + 10; i++) recordAdmission(s, cand('a'), `l${i}`, T, 1);
    expect(s.requestLog.size).toBe(UNLIMITED_LOG_CAP);
  });
});
