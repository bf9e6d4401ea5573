import { describe, expect, it } from 'vitest';
import { compilePriority, validatePattern, type MappingInput } from '../../src/core/priority/index.js';
import type { MatchType, PrioritySettings } from '../../src/core/types.js';

/** Any instant: these mappings carry no window. */
const NOW_MS = Date.parse('2026-03-04T12:00:00Z');
const ON: PrioritySettings = { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 };
const OFF: PrioritySettings = { enabled: false, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 };

let sequence = 0;
function mapping(matchType: MatchType, pattern: string, priority: number, extra: Partial<MappingInput> = {}): MappingInput {
  sequence++;
  return {
    id: `${matchType}:${pattern}:${priority}`,
    pattern,
    matchType,
    priority,
    tenantId: null,
    tenantName: null,
    enabled: true,
    createdAtMs: 1_000 + sequence,
    ...extra,
  };
}

describe('validatePattern', () => {
  const accepted: Array<[MatchType, string]> = [
    ['exact', 'kp_abc'],
    ['prefix', 'kp_team'],
    ['suffix', 'xyz'],
    ['contains', 'prod'],
    ['exact', 'x'.repeat(256)],
    ['regex', '^kp_(dev|prod)_\\w+'],
    ['regex', 'kp_(dev|prod)_\\w+'],
    ['regex', '^kp_[0-9a-f]{8}'],
    ['regex', 'team-.*-prod'],
    ['regex', '^.*x.*y'],
    ['regex', '(ab)+c'],
    ['regex', '(dev|prod)?c'],
    ['regex', '[a-z]{3,}'],
    ['regex', 'a{100}'],
    ['regex', '\\p{L}+x'],
    ['regex', '(?<env>dev|prod)_'],
  ];
  it.each(accepted)('accepts %s %j', (matchType, pattern) => {
    expect(validatePattern(matchType, pattern)).toBeNull();
  });

  const refused: Array<[MatchType, string, RegExp]> = [
    ['exact', '', /empty/],
    ['prefix', 'x'.repeat(257), /at most 256/],
    ['contains', 'a\nb', /control/],
    ['regex', '(', /invalid regular expression/],
    ['regex', '\\_', /invalid regular expression/], // identity escape is an error under the u flag
    // exponential: nested repetition
    ['regex', '(a+)+$', /repeated group/],
    ['regex', '(a*)*', /repeated group/],
    ['regex', '(a|a)*', /repeated group/],
    ['regex', '(a|aa)+', /repeated group/],
    ['regex', '(.*a){20}', /repeated group/],
    ['regex', '(?:\\w+\\s?)+$', /repeated group/],
    ['regex', '((ab)*c)+', /repeated group/],
    // features with no linear bound
    ['regex', '(a)\\1', /backreference/],
    ['regex', '(?<x>a)\\k<x>', /backreference/],
    ['regex', 'a(?=b)', /lookahead and lookbehind/],
    ['regex', 'a(?!b)', /lookahead and lookbehind/],
    ['regex', '(?<=a)b', /lookahead and lookbehind/],
    ['regex', '(?<!a)b', /lookahead and lookbehind/],
    ['regex', 'a{101}', /at most 100/],
    ['regex', 'a{1,101}', /at most 100/],
    ['regex', 'a{101,}', /at most 100/],
    // polynomial: several open-ended repetitions that can trade characters
    ['regex', '.*x.*y', /backtrack/],
    ['regex', '.*x.*y.*z', /backtrack/],
    ['regex', '^.*a.*a.*b', /backtrack/],
    ['regex', '\\w+\\w+$', /backtrack/],
    ['regex', '[a-z]*[a-z]*$', /backtrack/],
    ['regex', 'a{0,100}a{0,100}b', /backtrack/],
  ];
  it.each(refused)('refuses %s %j', (matchType, pattern, reason) => {
    expect(validatePattern(matchType, pattern)).toMatch(reason);
  });

  it('accepted regexes stay fast on a hostile 512-character input', () => {
    const hostile = ['x'.repeat(512), 'a'.repeat(511) + '!', 'kp_'.repeat(170) + '!!'];
    for (const [, pattern] of accepted.filter(([type]) => type === 'regex')) {
      const regex = new RegExp(pattern, 'u');
      for (const input of hostile) {
        const startedMs = performance.now();
        regex.test(input);
        expect(performance.now() - startedMs).toBeLessThan(50);
      }
    }
  });
});

describe('compilePriority precedence', () => {
  const mappings = [
    mapping('regex', '^kp_', 6, { tenantId: 'regex-tenant' }),
    mapping('contains', 'team', 5),
    mapping('contains', 'teamblue', 4),
    mapping('suffix', 'z9', 3),
    mapping('suffix', 'xz9', 2, { tenantId: 'suffix-tenant', tenantName: 'Suffix' }),
    mapping('prefix', 'kp_a', 1),
    mapping('prefix', 'kp_ab', 1, { tenantId: 'acme', tenantName: 'Acme' }),
    mapping('exact', 'kp_abexact', 0, { tenantId: 'exact-tenant' }),
  ];
  const matcher = compilePriority(mappings, ON);

  const cases: Array<[string, number, string | null, MatchType | null]> = [
    ['kp_abexact', 0, 'exact-tenant', 'exact'], // exact beats the prefixes it also has
    ['kp_abc', 1, 'acme', 'prefix'], // longest prefix (kp_ab over kp_a)
    ['kp_aXX', 1, null, 'prefix'],
    ['kp_aXXxz9', 1, null, 'prefix'], // prefix beats suffix
    ['kp_Q_xz9', 2, 'suffix-tenant', 'suffix'], // longest suffix
    ['kp_Q_z9', 3, null, 'suffix'],
    ['kp_Q_teamblue_Q', 4, null, 'contains'], // longest contains
    ['kp_Q_team_Q', 5, null, 'contains'],
    ['kp_Q_teamblue_z9', 3, null, 'suffix'], // suffix beats contains
    ['kp_Q', 6, 'regex-tenant', 'regex'],
    ['sk_nothing', 7, null, null], // default
  ];
  it.each(cases)('%s -> priority %i, tenant %s (%s)', (key, priority, tenantId, matchType) => {
    expect(matcher.resolve(key, NOW_MS)).toMatchObject({ priority, tenantId });
    expect(matcher.explain(key, NOW_MS).matchType).toBe(matchType);
  });

  it('names the mapping that matched, null for the default', () => {
    expect(matcher.resolve('kp_abc', NOW_MS).mappingId).toBe('prefix:kp_ab:1');
    expect(matcher.resolve('sk_nothing', NOW_MS)).toEqual({ priority: 7, tenantId: null, tenantName: null, mappingId: null });
    expect(matcher.explain('kp_abc', NOW_MS)).toMatchObject({ pattern: 'kp_ab', matchType: 'prefix' });
  });
});

describe('compilePriority ties and exclusions', () => {
  it.each<[MatchType, string, string]>([
    ['exact', 'kp_same', 'kp_same'],
    ['prefix', 'kp_s', 'kp_same'],
    ['suffix', 'ame', 'kp_same'],
    ['contains', '_sa', 'kp_same'],
  ])('%s: equal patterns -> lowest priority number, then earliest created', (matchType, pattern, key) => {
    const later = { ...mapping(matchType, pattern, 3), id: 'later', createdAtMs: 20 };
    const earlier = { ...mapping(matchType, pattern, 3), id: 'earlier', createdAtMs: 10 };
    const stronger = { ...mapping(matchType, pattern, 2), id: 'stronger', createdAtMs: 30 };
    expect(compilePriority([later, earlier], ON).resolve(key, NOW_MS).mappingId).toBe('earlier');
    expect(compilePriority([earlier, later], ON).resolve(key, NOW_MS).mappingId).toBe('earlier');
    expect(compilePriority([later, earlier, stronger], ON).resolve(key, NOW_MS).mappingId).toBe('stronger');
  });

  it('contains: different patterns of equal length -> lowest priority number', () => {
    const matcher = compilePriority([mapping('contains', 'abc', 4), mapping('contains', 'xyz', 1)], ON);
    expect(matcher.resolve('kp_abc_xyz', NOW_MS).priority).toBe(1);
    expect(matcher.resolve('kp_xyz_abc', NOW_MS).priority).toBe(1);
  });

  it('contains: patterns that overlap or nest inside each other are all found', () => {
    const matcher = compilePriority(
      [mapping('contains', 'he', 5), mapping('contains', 'she', 4), mapping('contains', 'hers', 3), mapping('contains', 'his', 6)],
      ON,
    );
    const table: Array<[string, number]> = [
      ['ushers', 3], // "she", "he" and "hers" all occur; the longest wins
      ['ushe', 4],
      ['xhe', 5],
      ['ahis', 6],
      ['xyz', 7],
    ];
    for (const [key, priority] of table) expect(matcher.resolve(key, NOW_MS).priority).toBe(priority);
  });

  it('regex: first in created order wins, regardless of priority', () => {
    const first = { ...mapping('regex', 'b', 5), createdAtMs: 1 };
    const second = { ...mapping('regex', 'a', 0), createdAtMs: 2 };
    expect(compilePriority([second, first], ON).resolve('kp_ab', NOW_MS).priority).toBe(5);
  });

  it('ignores disabled mappings', () => {
    const matcher = compilePriority([mapping('exact', 'kp_x', 0, { enabled: false }), mapping('prefix', 'kp_', 4)], ON);
    expect(matcher.resolve('kp_x', NOW_MS).priority).toBe(4);
    expect(matcher.size).toBe(1);
  });

  it('always returns the default when priority is disabled', () => {
    const matcher = compilePriority([mapping('exact', 'kp_x', 0)], OFF);
    expect(matcher.resolve('kp_x', NOW_MS)).toEqual({ priority: 7, tenantId: null, tenantName: null, mappingId: null });
  });

  it('skips (and reports) stored mappings whose pattern is invalid', () => {
    const bad = mapping('regex', '(a+)+$', 0);
    const matcher = compilePriority([bad, mapping('prefix', 'kp_', 3)], ON);
    expect(matcher.resolve('kp_aaaa', NOW_MS).priority).toBe(3);
    expect(matcher.skipped).toEqual([{ id: bad.id, error: expect.stringMatching(/repeated group/) }]);
  });

  it('handles non-ASCII patterns and keys without confusion', () => {
    const matcher = compilePriority([mapping('contains', 'é', 2), mapping('suffix', '€', 1), mapping('prefix', 'ü', 0)], ON);
    expect(matcher.resolve('aéb', NOW_MS).priority).toBe(2);
    expect(matcher.resolve('a€', NOW_MS).priority).toBe(1);
    expect(matcher.resolve('üx', NOW_MS).priority).toBe(0);
    expect(matcher.resolve('abc', NOW_MS).priority).toBe(7);
  });
});

describe('compilePriority at scale', () => {
  // Deterministic pseudo-random base62 strings (mulberry32).
  function randomStrings(seed: number): (length: number) => string {
    let state = seed;
    const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const next = () => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    return (length) => Array.from({ length }, () => alphabet[Math.floor(next() * 62)]).join('');
  }

  it('compiles 10k mappings and agrees with a brute-force scan', () => {
    const random = randomStrings(42);
    const types: MatchType[] = ['exact', 'prefix', 'suffix', 'contains'];
    const mappings: MappingInput[] = Array.from({ length: 10_000 }, (_, index) => {
      const matchType = types[index % 4] as MatchType;
      const pattern =
        matchType === 'exact' ? `kp_${random(40)}` : matchType === 'prefix' ? `kp_${random(1 + (index % 4))}` : random(2 + (index % 3));
      return { id: `m${index}`, pattern, matchType, priority: index % 8, tenantId: null, tenantName: null, enabled: true, createdAtMs: index };
    });
    const startedMs = performance.now();
    const matcher = compilePriority(mappings, ON);
    expect(performance.now() - startedMs).toBeLessThan(2_000); // sanity only; the benchmark measures
    expect(matcher.size).toBe(10_000);

    const keys = [...Array.from({ length: 300 }, () => `kp_${random(40)}`), mappings[0]?.pattern ?? ''];
    for (const key of keys) expect(matcher.resolve(key, NOW_MS).mappingId).toBe(bruteForce(mappings, key));
  });

  it('finds long contains patterns past the dense part of the automaton', () => {
    // 2,000 patterns of 12-20 characters make ~30k automaton states: more than the dense table holds for a
    // 62-character alphabet, so deep states take the sparse path (child list + failure links).
    const random = randomStrings(7);
    const mappings: MappingInput[] = Array.from({ length: 2_000 }, (_, index) => ({
      id: `c${index}`,
      pattern: random(12 + (index % 9)),
      matchType: 'contains' as const,
      priority: index % 5,
      tenantId: null,
      tenantName: null,
      enabled: true,
      createdAtMs: index,
    }));
    const matcher = compilePriority(mappings, ON);
    const keys: string[] = [];
    for (let index = 0; index < 200; index++) {
      const pattern = mappings[(index * 37) % mappings.length]?.pattern ?? '';
      const other = mappings[(index * 53 + 1) % mappings.length]?.pattern ?? '';
      keys.push(`kp_${random(5)}${pattern}${random(5)}`); // contains one pattern
      keys.push(`kp_${pattern.slice(0, -1)}${other}`); // near miss followed by a match: failure links must recover
      keys.push(`kp_${pattern.slice(0, 10)}${random(30)}`); // deep partial match only
    }
    for (const key of keys) expect(matcher.resolve(key, NOW_MS).mappingId).toBe(bruteForce(mappings, key));
  });

  /** The precedence rules written as plainly as possible. */
  function bruteForce(mappings: readonly MappingInput[], key: string): string | null {
    const better = (a: MappingInput, b: MappingInput) =>
      a.pattern.length !== b.pattern.length
        ? a.pattern.length > b.pattern.length
        : a.priority !== b.priority
          ? a.priority < b.priority
          : a.createdAtMs !== b.createdAtMs
            ? a.createdAtMs < b.createdAtMs
            : a.id < b.id;
    const tests: Array<[MatchType, (pattern: string) => boolean]> = [
      ['exact', (pattern) => key === pattern],
      ['prefix', (pattern) => key.startsWith(pattern)],
      ['suffix', (pattern) => key.endsWith(pattern)],
      ['contains', (pattern) => key.includes(pattern)],
    ];
    for (const [type, test] of tests) {
      let best: MappingInput | null = null;
      for (const candidate of mappings) {
        if (candidate.matchType === type && test(candidate.pattern) && (best === null || better(candidate, best))) best = candidate;
      }
      if (best !== null) return best.id;
    }
    return null;
  }
});
