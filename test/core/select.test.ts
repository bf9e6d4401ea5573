import { describe, expect, it } from 'vitest';
import { orderCandidates } from '../../src/core/select.js';
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
  };
}

function pool(accounts: Account[], strategy: Strategy = 'round-robin'): ProviderPool {
  return { slug: 'openai', authStyle: 'bearer', dialect: 'openai', strategy, accounts };
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
