import { describe, expect, it } from 'vitest';
import { cursorSkips, orderCandidates } from '../../src/core/select.js';
import type { Account, ProviderPool, Strategy } from '../../src/core/types.js';

function account(name: string, tier = 0, weight = 1): Account {
  return {
    id: `id-${name}`,
    providerSlug: 'openai',
    name,
    secret: `sk-${name}`,
    weight,
    tier,
    rpmLimit: null,
    tpmLimit: null,
    maxConcurrency: null,
    status: 'active',
    scope: null,
    servesModel: () => true,
    restrictsModels: false,
  };
}

function pool(accounts: Account[], strategy: Strategy = 'round-robin'): ProviderPool {
  return { slug: 'openai', authStyle: 'bearer', dialect: 'openai', strategy, accounts, needsModel: false, countsTokens: false, readsPath: false };
}

const names = (accounts: readonly Account[]) => accounts.map((item) => item.name);
const never = () => {
  throw new Error('randomUnit must not be called');
};

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
function seededUnit(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('round-robin', () => {
  const three = pool([account('a'), account('b'), account('c')]);
  it.each<[number, string[]]>([
    [0, ['a', 'b', 'c']],
    [1, ['b', 'c', 'a']],
    [2, ['c', 'a', 'b']],
    [3, ['a', 'b', 'c']],
    [-1, ['c', 'a', 'b']],
    [3e12 + 1, ['b', 'c', 'a']],
    [Number.NaN, ['a', 'b', 'c']],
  ])('cursor %d -> %j', (cursor, expected) => {
    expect(names(orderCandidates(three, 'round-robin', cursor, never))).toEqual(expected);
  });

  it('spreads first choices evenly over successive cursors', () => {
    const counts = new Map<string, number>();
    for (let cursor = 0; cursor < 300; cursor++) {
      const first = orderCandidates(three, 'round-robin', cursor, never)[0]?.name ?? '';
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({ a: 100, b: 100, c: 100 });
  });

  it('returns every account exactly once and leaves the pool untouched', () => {
    const order = orderCandidates(three, 'round-robin', 2, never);
    expect([...names(order)].sort()).toEqual(['a', 'b', 'c']);
    expect(names(three.accounts)).toEqual(['a', 'b', 'c']);
  });

  it.each<Strategy>(['round-robin', 'weighted-random', 'priority', 'least-loaded'])('%s handles empty and single pools', (strategy) => {
    expect(orderCandidates(pool([]), strategy, 5, never)).toEqual([]);
    expect(names(orderCandidates(pool([account('solo')]), strategy, 5, never))).toEqual(['solo']);
  });
});

describe('priority', () => {
  const tiered = pool([account('a0', 0), account('b0', 0), account('a1', 1), account('b1', 1), account('c1', 1), account('a2', 2)]);
  it.each<[number, string[]]>([
    [0, ['a0', 'b0', 'a1', 'b1', 'c1', 'a2']],
    [1, ['b0', 'a0', 'b1', 'c1', 'a1', 'a2']],
    [2, ['a0', 'b0', 'c1', 'a1', 'b1', 'a2']],
  ])('cursor %d -> %j (lowest tier first, rotated inside tiers)', (cursor, expected) => {
    expect(names(orderCandidates(tiered, 'priority', cursor, never))).toEqual(expected);
  });

  it('sorts by tier even when the pool is not ordered', () => {
    const unordered = pool([account('x2', 2), account('x0', 0), account('x1', 1)]);
    expect(names(orderCandidates(unordered, 'priority', 0, never))).toEqual(['x0', 'x1', 'x2']);
  });
});

describe('least-loaded', () => {
  it('keeps the pool order (the state store reorders by learned capacity)', () => {
    const tiered = pool([account('a', 0), account('b', 0), account('c', 1)]);
    expect(names(orderCandidates(tiered, 'least-loaded', 7, never))).toEqual(['a', 'b', 'c']);
  });
});

describe('weighted-random', () => {
  const weighted = pool([account('heavy', 0, 6), account('medium', 0, 3), account('light', 0, 1), account('off', 0, 0)]);

  it('picks first choices in proportion to weight', () => {
    const randomUnit = seededUnit(1234);
    const counts: Record<string, number> = { heavy: 0, medium: 0, light: 0, off: 0 };
    const draws = 20_000;
    for (let draw = 0; draw < draws; draw++) {
      const first = orderCandidates(weighted, 'weighted-random', draw, randomUnit)[0]?.name ?? '';
      counts[first] = (counts[first] ?? 0) + 1;
    }
    expect((counts.heavy ?? 0) / draws).toBeCloseTo(0.6, 1);
    expect((counts.medium ?? 0) / draws).toBeCloseTo(0.3, 1);
    expect((counts.light ?? 0) / draws).toBeCloseTo(0.1, 1);
    expect(counts.off).toBe(0);
  });

  it('orders without replacement and puts weight 0 last', () => {
    const randomUnit = seededUnit(99);
    for (let draw = 0; draw < 200; draw++) {
      const order = names(orderCandidates(weighted, 'weighted-random', draw, randomUnit));
      expect([...order].sort()).toEqual(['heavy', 'light', 'medium', 'off']);
      expect(order[3]).toBe('off');
    }
  });

  it('treats negative and non-numeric weights like 0: last, in pool order', () => {
    const odd = pool([account('nan', 0, Number.NaN), account('neg', 0, -2), account('ok', 0, 1), account('inf', 0, Infinity)]);
    const randomUnit = seededUnit(5);
    for (let draw = 0; draw < 50; draw++) {
      expect(names(orderCandidates(odd, 'weighted-random', draw, randomUnit))).toEqual(['ok', 'nan', 'neg', 'inf']);
    }
  });

  it.each<[number[], string[]]>([
    // keys ln(u)/w: heavy ln(.5)/6=-0.116, medium ln(.9)/3=-0.035, light ln(.99)/1=-0.010
    [[0.5, 0.9, 0.99], ['light', 'medium', 'heavy', 'off']],
    // heavy ln(.99)/6=-0.0017, medium ln(.5)/3=-0.231, light ln(.5)/1=-0.693
    [[0.99, 0.5, 0.5], ['heavy', 'medium', 'light', 'off']],
    // a 0 draw is nudged, not -Infinity for everyone: the others still order by their keys
    [[0, 0.9, 0.5], ['medium', 'light', 'heavy', 'off']],
  ])('is exactly the Efraimidis-Spirakis order for draws %j', (draws, expected) => {
    let index = 0;
    const randomUnit = () => draws[index++] ?? 0.5;
    expect(names(orderCandidates(weighted, 'weighted-random', 0, randomUnit))).toEqual(expected);
  });
});

describe('round-robin fairness when accounts are skipped (the cursor also steps over skipped accounts)', () => {
  const DECISIONS = 1_000;
  /** Runs decisions the way the engine does: order from the cursor, admit the first not skipped, move the cursor. */
  function shares(accounts: Account[], strategy: Strategy, skipped: (name: string, decision: number) => boolean): Record<string, number> {
    const p = pool(accounts, strategy);
    const counts: Record<string, number> = {};
    let cursor = 0;
    for (let i = 0; i < DECISIONS; i++) {
      const order = orderCandidates(p, strategy, cursor, never);
      const served = order.find((candidate) => !skipped(candidate.name, i));
      if (served !== undefined) counts[served.name] = (counts[served.name] ?? 0) + 1;
      cursor += 1 + (served === undefined ? 0 : cursorSkips(p, strategy, cursor, served.id));
    }
    return counts;
  }

  it.each<[string, Account[], Strategy, (name: string, decision: number) => boolean, Record<string, number>]>([
    ['b always skipped', ['a', 'b', 'c', 'd'].map((n) => account(n)), 'round-robin', (n) => n === 'b', { a: 1 / 3, c: 1 / 3, d: 1 / 3 }],
    ['a and c skipped', ['a', 'b', 'c', 'd', 'e'].map((n) => account(n)), 'round-robin', (n) => n === 'a' || n === 'c', { b: 1 / 3, d: 1 / 3, e: 1 / 3 }],
    ['nothing skipped', ['a', 'b', 'c', 'd'].map((n) => account(n)), 'round-robin', () => false, { a: 0.25, b: 0.25, c: 0.25, d: 0.25 }],
    [
      'priority: tier 0 with one skipped',
      [account('a', 0), account('b', 0), account('c', 0), account('z', 1)],
      'priority',
      (n) => n === 'b',
      { a: 0.5, c: 0.5 },
    ],
  ])('%s: each eligible account within 1%% of an equal share over 1,000 decisions', (_label, accounts, strategy, skipped, expected) => {
    const counts = shares(accounts, strategy, skipped);
    expect(Object.keys(counts).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, share] of Object.entries(expected)) {
      expect(Math.abs((counts[name] ?? 0) / DECISIONS - share), `${name}: ${counts[name]}`).toBeLessThanOrEqual(0.01);
    }
  });

  it('a plain per-request counter would not be fair (what the cursor fixes)', () => {
    const p = pool(['a', 'b', 'c', 'd'].map((n) => account(n)));
    const counts: Record<string, number> = {};
    for (let i = 0; i < DECISIONS; i++) {
      const served = orderCandidates(p, 'round-robin', i, never).find((candidate) => candidate.name !== 'b')!;
      counts[served.name] = (counts[served.name] ?? 0) + 1;
    }
    expect(counts['c']).toBe(500);
  });

  it.each<[Strategy, number, string, number]>([
    ['round-robin', 0, 'id-a', 0],
    ['round-robin', 0, 'id-x', 2],
    ['round-robin', 5, 'id-a', 3],
    ['priority', 0, 'id-y', 1],
    ['priority', 1, 'id-x', 1],
    ['priority', 1, 'id-b', 0],
    ['weighted-random', 0, 'id-y', 0],
    ['least-loaded', 0, 'id-y', 0],
    ['round-robin', 0, 'id-gone', 0],
  ])('cursorSkips %s from cursor %i, served by %s: %i skipped', (strategy, cursor, admitted, skips) => {
    const accounts = [account('a', 0), account('b', 0), account('x', 1), account('y', 1)];
    expect(cursorSkips(pool(accounts, strategy), strategy, cursor, admitted)).toBe(skips);
  });
});
