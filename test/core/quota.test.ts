// Core tables: quota windows, calendar days in a zone (DST changes included) and the priority reserve arithmetic.
import { describe, expect, it } from 'vitest';
import { newAccountState, reserveShortfall, admitFirst, WINDOW_MS, type AccountState } from '../../src/core/capacity.js';
import {
  admitWithQuotas,
  DEFAULT_PRIORITY_RESERVE,
  newQuotaState,
  pickDay,
  reserveFor,
  utcDayBounds,
  zonedDayBounds,
  type QuotaState,
} from '../../src/core/quota.js';
import type { AdmitCandidate, AdmitRequest, QuotaSubject } from '../../src/core/admission.js';

const iso = (t: number): string => new Date(t).toISOString();
const at = (text: string): number => Date.parse(text);

describe('zonedDayBounds', () => {
  const cases: Array<[zone: string, now: string, expected: [string, string, string, string]]> = [
    ['UTC', '2026-03-10T12:00:00Z', ['2026-03-09T00:00:00.000Z', '2026-03-10T00:00:00.000Z', '2026-03-11T00:00:00.000Z', '2026-03-12T00:00:00.000Z']],
    // Berlin, CET (+1): the local day of 00:30 local is the day that began at 23:00Z the evening before.
    ['Europe/Berlin', '2026-01-14T23:30:00Z', ['2026-01-13T23:00:00.000Z', '2026-01-14T23:00:00.000Z', '2026-01-15T23:00:00.000Z', '2026-01-16T23:00:00.000Z']],
    // Spring forward on Sunday 29 March 2026 (02:00 -> 03:00): that day is 23 h long.
    ['Europe/Berlin', '2026-03-29T12:00:00Z', ['2026-03-27T23:00:00.000Z', '2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z', '2026-03-30T22:00:00.000Z']],
    // Fall back on Sunday 25 October 2026 (03:00 -> 02:00): that day is 25 h long.
    ['Europe/Berlin', '2026-10-25T12:00:00Z', ['2026-10-23T22:00:00.000Z', '2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z', '2026-10-26T23:00:00.000Z']],
    // New York, spring forward 8 March 2026.
    ['America/New_York', '2026-03-08T15:00:00Z', ['2026-03-07T05:00:00.000Z', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z', '2026-03-10T04:00:00.000Z']],
    // Santiago: DST starts at local midnight of 6 September 2026 (00:00 -> 01:00): that day begins at 01:00 local.
    ['America/Santiago', '2026-09-06T12:00:00Z', ['2026-09-05T04:00:00.000Z', '2026-09-06T04:00:00.000Z', '2026-09-07T03:00:00.000Z', '2026-09-08T03:00:00.000Z']],
    // Kolkata, +05:30, no DST.
    ['Asia/Kolkata', '2026-06-01T20:00:00Z', ['2026-05-31T18:30:00.000Z', '2026-06-01T18:30:00.000Z', '2026-06-02T18:30:00.000Z', '2026-06-03T18:30:00.000Z']],
  ];
  it.each(cases)('%s at %s', (zone, now, expected) => {
    expect(zonedDayBounds(at(now), zone).map(iso)).toEqual(expected);
  });

  it('UTC without Intl agrees with the zone computation for Etc/Greenwich', () => {
    const now = at('2026-07-04T03:04:05Z');
    expect(zonedDayBounds(now, 'Etc/Greenwich')).toEqual(utcDayBounds(now));
  });

  it('pickDay takes the day that holds now, also when the caller computed the bounds a day earlier', () => {
    const bounds = zonedDayBounds(at('2026-03-29T12:00:00Z'), 'Europe/Berlin');
    expect(pickDay(bounds, at('2026-03-29T21:59:59Z')).map(iso)).toEqual(['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z']);
    expect(pickDay(bounds, at('2026-03-29T22:00:00Z')).map(iso)).toEqual(['2026-03-29T22:00:00.000Z', '2026-03-30T22:00:00.000Z']);
    expect(pickDay(bounds, at('2026-03-28T22:59:59Z')).map(iso)).toEqual(['2026-03-27T23:00:00.000Z', '2026-03-28T23:00:00.000Z']);
  });
});

describe('priority reserve arithmetic (reserveShortfall)', () => {
  const T = 1_800_000_000_000;
  const cand = (limits: Partial<AdmitCandidate>): AdmitCandidate => ({ id: 'a', rpmLimit: null, tpmLimit: null, maxConcurrency: null, ...limits });
  function stateWith(setup: (s: AccountState) => void): AccountState {
    const s = newAccountState();
    setup(s);
    return s;
  }
  const rows: Array<[string, (s: AccountState) => void, AdmitCandidate, number, number | null | undefined]> = [
    ['idle account, any reserve', () => {}, cand({ rpmLimit: 10 }), 0.25, undefined],
    // rpm 10, 6 used: after this one 3/10 = 0.3 left >= 0.25.
    ['rpm 6/10 used, reserve 0.25', (s) => [0, 1, 2, 3, 4, 5].forEach((i) => s.requestLog.push(T - 1000 + i, 10)), cand({ rpmLimit: 10 }), 0.25, undefined],
    // 7 used: 2/10 left after: below 0.25; frees when the oldest leaves the window.
    ['rpm 7/10 used, reserve 0.25', (s) => [0, 1, 2, 3, 4, 5, 6].forEach((i) => s.requestLog.push(T - 1000 + i, 10)), cand({ rpmLimit: 10 }), 0.25, T - 1000 + WINDOW_MS],
    ['rpm 8/10 used, reserve 0.1', (s) => [0, 1, 2, 3, 4, 5, 6, 7].forEach((i) => s.requestLog.push(T - 1000 + i, 10)), cand({ rpmLimit: 10 }), 0.1, undefined],
    // Provider says 20 of 100 left until reset: after this request 19/100 < 0.25.
    ['provider 20/100 left, reserve 0.25', (s) => Object.assign(s.learned, { requestsLimit: 100, requestsRemaining: 20, requestsResetAtMs: T + 5000 }), cand({}), 0.25, T + 5000],
    ['provider 20/100 left, reserve 0.1', (s) => Object.assign(s.learned, { requestsLimit: 100, requestsRemaining: 20, requestsResetAtMs: T + 5000 }), cand({}), 0.1, undefined],
    // A past reset: the reported remaining no longer applies.
    ['provider 1/100 left but reset passed', (s) => Object.assign(s.learned, { requestsLimit: 100, requestsRemaining: 1, requestsResetAtMs: T - 1 }), cand({}), 0.25, undefined],
    ['tokens 10k/100k left, reserve 0.25', (s) => Object.assign(s.learned, { tokensLimit: 100_000, tokensRemaining: 10_000, tokensResetAtMs: T + 7000 }), cand({}), 0.25, T + 7000],
    // Concurrency 4, 3 in flight: after this one 0 left; frees at an unknown instant.
    ['concurrency 3/4, reserve 0.25', (s) => [1, 2, 3].forEach((i) => s.leases.set(`l${i}`, T + 60_000)), cand({ maxConcurrency: 4 }), 0.25, null],
    // 10 % of 4 slots is less than one slot: concurrency takes no part (a single-slot account stays usable).
    ['concurrency 3/4, reserve 0.1 (under one unit)', (s) => [1, 2, 3].forEach((i) => s.leases.set(`l${i}`, T + 60_000)), cand({ maxConcurrency: 4 }), 0.1, undefined],
    ['concurrency 0/1, reserve 0.25 (under one unit)', () => {}, cand({ maxConcurrency: 1 }), 0.25, undefined],
    // A provider budget without a reset instant takes no part (it would park the account for low priorities for good).
    ['provider 0 left, no reset', (s) => Object.assign(s.learned, { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: null }), cand({}), 0.25, undefined],
    // Unknown provider limit: no share can be computed.
    ['provider 1 left, limit unknown', (s) => Object.assign(s.learned, { requestsRemaining: 1, requestsResetAtMs: T + 5000 }), cand({}), 0.25, undefined],
    // Two dimensions below: the later reset is when both are back.
    [
      'provider and tokens both low',
      (s) => Object.assign(s.learned, { requestsLimit: 100, requestsRemaining: 5, requestsResetAtMs: T + 1000, tokensLimit: 100, tokensRemaining: 5, tokensResetAtMs: T + 9000 }),
      cand({}),
      0.25,
      T + 9000,
    ],
  ];
  it.each(rows)('%s', (_name, setup, candidate, reserve, expected) => {
    expect(reserveShortfall(stateWith(setup), candidate, T, reserve)).toBe(expected);
  });

  it('reserveFor follows the default table and gives 0 outside it', () => {
    expect([0, 2, 3, 5, 6, 9].map((p) => reserveFor(DEFAULT_PRIORITY_RESERVE, p))).toEqual([0, 0, 0.1, 0.1, 0.25, 0.25]);
    expect(reserveFor(DEFAULT_PRIORITY_RESERVE, 12)).toBe(0);
  });

  it('admitFirst sheds a low-priority request on a low account and admits a high-priority one (reserve 0)', () => {
    const states = new Map<string, AccountState>();
    const stateOf = (id: string): AccountState => states.get(id) ?? (states.set(id, newAccountState()), states.get(id)!);
    Object.assign(stateOf('a').learned, { requestsLimit: 100, requestsRemaining: 10, requestsResetAtMs: T + 30_000 });
    const request = (reserve: number): AdmitRequest => ({ pool: 'p', candidates: [cand({})], leastLoaded: false, nowMs: T, leaseMs: 60_000, reserve });
    expect(admitFirst(stateOf, request(0.25), 'l1')).toEqual({ ok: false, reason: 'shed', retryAtMs: T + 30_000 });
    // Shedding counted nothing: the provider budget is untouched.
    expect(stateOf('a').learned.requestsRemaining).toBe(10);
    expect(admitFirst(stateOf, request(0), 'l2')).toMatchObject({ ok: true, accountId: 'a' });
    expect(stateOf('a').learned.requestsRemaining).toBe(9);
  });
});

describe('admitWithQuotas', () => {
  const T = at('2026-05-05T23:59:00Z');
  const account: AdmitCandidate = { id: 'a', rpmLimit: null, tpmLimit: null, maxConcurrency: null };
  function harness() {
    const accounts = new Map<string, AccountState>();
    const quotas = new Map<string, QuotaState>();
    return {
      accounts,
      admit(request: Partial<AdmitRequest> & { quotas: readonly QuotaSubject[] }, nowMs: number, lease: string) {
        return admitWithQuotas(
          (id) => accounts.get(id) ?? (accounts.set(id, newAccountState()), accounts.get(id)!),
          (s) => quotas.get(`${s.scope}:${s.id}`) ?? (quotas.set(`${s.scope}:${s.id}`, newQuotaState()), quotas.get(`${s.scope}:${s.id}`)!),
          { pool: 'p', candidates: [account], leastLoaded: false, nowMs, leaseMs: 60_000, dayBounds: utcDayBounds(nowMs), ...request },
          lease,
        );
      },
    };
  }

  it('key rpm: exactly the limit per sliding minute, then quota/minute until the oldest leaves', () => {
    const h = harness();
    const quotas = [{ scope: 'key', id: 'k1', rpmLimit: 3, rpdLimit: null }] as const;
    for (let i = 0; i < 3; i++) expect(h.admit({ quotas }, T + i, `l${i}`).ok).toBe(true);
    expect(h.admit({ quotas }, T + 10, 'x')).toEqual({ ok: false, reason: 'quota', retryAtMs: T + WINDOW_MS, limit: { scope: 'key', window: 'minute' } });
    expect(h.admit({ quotas }, T + WINDOW_MS, 'y').ok).toBe(true);
  });

  it('tenant rpd: the calendar day, reset at the day boundary', () => {
    const h = harness();
    const quotas = [
      { scope: 'key', id: 'k1', rpmLimit: null, rpdLimit: null },
      { scope: 'tenant', id: 'acme', rpmLimit: null, rpdLimit: 2 },
    ] as const;
    expect(h.admit({ quotas }, T, 'a').ok).toBe(true);
    expect(h.admit({ quotas }, T + 1, 'b').ok).toBe(true);
    const refused = h.admit({ quotas }, T + 2, 'c');
    expect(refused).toEqual({ ok: false, reason: 'quota', retryAtMs: at('2026-05-06T00:00:00Z'), limit: { scope: 'tenant', window: 'day' } });
    expect(h.admit({ quotas }, at('2026-05-06T00:00:00Z'), 'd').ok).toBe(true);
  });

  it('all or none: a request the accounts refuse is charged to no quota', () => {
    const h = harness();
    const quotas = [{ scope: 'key', id: 'k1', rpmLimit: 1, rpdLimit: 1 }] as const;
    const busy = { ...account, maxConcurrency: 1 };
    expect(h.admit({ quotas, candidates: [busy] }, T, 'l1').ok).toBe(true);
    const h2 = harness();
    expect(h2.admit({ quotas: [], candidates: [busy] }, T, 'hold').ok).toBe(true);
    expect(h2.admit({ quotas, candidates: [busy] }, T + 1, 'l2')).toMatchObject({ ok: false, reason: 'exhausted' });
    h2.accounts.get('a')!.leases.clear();
    expect(h2.admit({ quotas, candidates: [busy] }, T + 2, 'l3').ok).toBe(true);
  });
});
