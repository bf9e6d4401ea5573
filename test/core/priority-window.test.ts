// Time-based priority rules: mappings with an active window, evaluated on the request's nowMs.
import { describe, expect, it } from 'vitest';
import { compilePriority, WEEKDAYS, type ActiveWindow, type MappingInput, type Weekday } from '../../src/core/priority/index.js';
import { localTimeOf, ZoneClock } from '../../src/core/priority/window.js';
import type { MatchType, PrioritySettings } from '../../src/core/types.js';

const ON: PrioritySettings = { enabled: true, defaultPriority: 9, queueMaxWaitMs: 0, queueMaxLength: 1000 };
const at = (iso: string): number => Date.parse(iso);
const MINUTE_MS = 60_000;

let sequence = 0;
function rule(matchType: MatchType, pattern: string, priority: number, window: string | null, id?: string): MappingInput {
  sequence++;
  return {
    id: id ?? `${matchType}:${pattern}:${priority}:${window ?? 'always'}`,
    pattern,
    matchType,
    priority,
    tenantId: null,
    tenantName: null,
    enabled: true,
    createdAtMs: 1_000 + sequence,
    window: window === null ? null : parse(window),
  };
}

/** 'mon,tue 08:00-20:00 Europe/Berlin' (test shorthand; days listed one by one). */
function parse(text: string): ActiveWindow {
  const [days, times, timezone] = text.split(' ') as [string, string, string];
  const [start, end] = times.split('-') as [string, string];
  const list = days === 'all' ? [...WEEKDAYS] : (days.split(',') as Weekday[]);
  return { days: list, start, end, timezone };
}

const WEEKDAYS_LIST = 'mon,tue,wed,thu,fri';

describe('a windowed rule and its always-on fallback (same pattern)', () => {
  // Batch keys: P7 on weekdays 08:00-20:00 Berlin time, P3 otherwise.
  const matcher = compilePriority(
    [rule('prefix', 'kp_batch_', 3, null, 'night'), rule('prefix', 'kp_batch_', 7, `${WEEKDAYS_LIST} 08:00-20:00 Europe/Berlin`, 'day')],
    ON,
  );
  const table: Array<[string, string, number]> = [
    ['Wednesday 07:59 CET', '2026-03-04T06:59:59.999Z', 3],
    ['Wednesday 08:00 CET (start is inclusive)', '2026-03-04T07:00:00Z', 7],
    ['Wednesday 12:00 CET', '2026-03-04T11:00:00Z', 7],
    ['Wednesday 19:59 CET', '2026-03-04T18:59:59Z', 7],
    ['Wednesday 20:00 CET (end is exclusive)', '2026-03-04T19:00:00Z', 3],
    ['Saturday 12:00 CET', '2026-03-07T11:00:00Z', 3],
    ['Sunday 12:00 CET', '2026-03-08T11:00:00Z', 3],
    ['Monday 08:00 CEST (after the spring change, UTC+2)', '2026-03-30T06:00:00Z', 7],
    ['Monday 07:59 CEST', '2026-03-30T05:59:00Z', 3],
    ['Friday 19:30 CEST', '2026-07-03T17:30:00Z', 7],
    ['Friday 20:30 CEST', '2026-07-03T18:30:00Z', 3],
  ];
  it.each(table)('%s (%s) -> P%i', (_label, iso, priority) => {
    expect(matcher.resolve('kp_batch_abc', at(iso)).priority).toBe(priority);
    expect(matcher.resolve('kp_batch_abc', at(iso)).mappingId).toBe(priority === 7 ? 'day' : 'night');
  });

  it('explains which rule matched and its window', () => {
    const inside = matcher.explain('kp_batch_abc', at('2026-03-04T11:00:00Z'));
    expect(inside).toMatchObject({ matchType: 'prefix', pattern: 'kp_batch_', window: parse(`${WEEKDAYS_LIST} 08:00-20:00 Europe/Berlin`) });
    expect(matcher.explain('kp_batch_abc', at('2026-03-07T11:00:00Z')).window).toBeNull();
    expect(matcher.size).toBe(2);
    expect(matcher.timedSize).toBe(1);
  });

  it('answers the same whatever order the instants come in (per-minute cache)', () => {
    const instants = table.map(([, iso, priority]) => [at(iso), priority] as const);
    for (const [nowMs, priority] of [...instants].reverse()) expect(matcher.resolve('kp_batch_abc', nowMs).priority).toBe(priority);
    for (let i = 0; i < 50; i++) {
      const [nowMs, priority] = instants[(i * 7) % instants.length]!;
      expect(matcher.resolve('kp_batch_abc', nowMs).priority).toBe(priority);
    }
  });

  it('treats a non-finite instant as outside every window', () => {
    expect(matcher.resolve('kp_batch_abc', Number.NaN).priority).toBe(3);
    expect(matcher.resolve('kp_batch_abc', Number.POSITIVE_INFINITY).priority).toBe(3);
  });
});

/** Minutes in [fromIso, toIso) during which a window alone gives the key its priority. */
function openMinutes(window: string, fromIso: string, toIso: string): { count: number; first: string | null; last: string | null } {
  const matcher = compilePriority([rule('exact', 'k', 1, window)], ON);
  let count = 0;
  let first: string | null = null;
  let last: string | null = null;
  for (let t = at(fromIso); t < at(toIso); t += MINUTE_MS) {
    if (matcher.resolve('k', t).priority !== 1) continue;
    count++;
    first ??= new Date(t).toISOString();
    last = new Date(t).toISOString();
  }
  return { count, first, last };
}

describe('daylight saving time (wall clock, not elapsed time)', () => {
  const table: Array<[string, string, string, string, { count: number; first: string | null; last: string | null }]> = [
    // Europe/Berlin springs forward on 2026-03-29 at 01:00 UTC: 02:00 CET becomes 03:00 CEST.
    ['Berlin spring gap: a window wholly inside the gap never opens', 'sun 02:00-03:00 Europe/Berlin', '2026-03-28T20:00:00Z', '2026-03-29T06:00:00Z', { count: 0, first: null, last: null }],
    ['Berlin spring gap: a window starting in the gap opens at 03:00 CEST', 'sun 02:30-03:30 Europe/Berlin', '2026-03-28T20:00:00Z', '2026-03-29T06:00:00Z', { count: 30, first: '2026-03-29T01:00:00.000Z', last: '2026-03-29T01:29:00.000Z' }],
    ['Berlin spring: 01:00-04:00 lasts two hours', 'sun 01:00-04:00 Europe/Berlin', '2026-03-28T20:00:00Z', '2026-03-29T06:00:00Z', { count: 120, first: '2026-03-29T00:00:00.000Z', last: '2026-03-29T01:59:00.000Z' }],
    ['Berlin ordinary Sunday: 01:00-04:00 lasts three hours', 'sun 01:00-04:00 Europe/Berlin', '2026-03-21T20:00:00Z', '2026-03-22T06:00:00Z', { count: 180, first: '2026-03-22T00:00:00.000Z', last: '2026-03-22T02:59:00.000Z' }],
    // Europe/Berlin falls back on 2026-10-25 at 01:00 UTC: 03:00 CEST becomes 02:00 CET, 02:00-02:59 occurs twice.
    ['Berlin fall overlap: 02:00-02:30 is open both times', 'sun 02:00-02:30 Europe/Berlin', '2026-10-24T20:00:00Z', '2026-10-25T06:00:00Z', { count: 60, first: '2026-10-25T00:00:00.000Z', last: '2026-10-25T01:29:00.000Z' }],
    ['Berlin fall: 01:00-04:00 lasts four hours', 'sun 01:00-04:00 Europe/Berlin', '2026-10-24T20:00:00Z', '2026-10-25T06:00:00Z', { count: 240, first: '2026-10-24T23:00:00.000Z', last: '2026-10-25T02:59:00.000Z' }],
    // America/New_York springs forward on 2026-03-08 at 07:00 UTC (02:00 EST -> 03:00 EDT).
    ['New York spring gap: a window wholly inside the gap never opens', 'sun 02:00-03:00 America/New_York', '2026-03-08T00:00:00Z', '2026-03-08T12:00:00Z', { count: 0, first: null, last: null }],
    ['New York spring: 01:00-04:00 lasts two hours', 'sun 01:00-04:00 America/New_York', '2026-03-08T00:00:00Z', '2026-03-08T12:00:00Z', { count: 120, first: '2026-03-08T06:00:00.000Z', last: '2026-03-08T07:59:00.000Z' }],
    // America/New_York falls back on 2026-11-01 at 06:00 UTC (02:00 EDT -> 01:00 EST): 01:00-01:59 occurs twice.
    ['New York fall overlap: 01:00-02:00 is open both times', 'sun 01:00-02:00 America/New_York', '2026-11-01T00:00:00Z', '2026-11-01T12:00:00Z', { count: 120, first: '2026-11-01T05:00:00.000Z', last: '2026-11-01T06:59:00.000Z' }],
    ['New York fall: 01:00-04:00 lasts four hours', 'sun 01:00-04:00 America/New_York', '2026-11-01T00:00:00Z', '2026-11-01T12:00:00Z', { count: 240, first: '2026-11-01T05:00:00.000Z', last: '2026-11-01T08:59:00.000Z' }],
    // Crossing midnight into the spring change: Saturday 22:00 CET to Sunday 06:00 CEST is seven hours.
    ['Berlin overnight window across the spring change', 'sat 22:00-06:00 Europe/Berlin', '2026-03-28T12:00:00Z', '2026-03-29T12:00:00Z', { count: 420, first: '2026-03-28T21:00:00.000Z', last: '2026-03-29T03:59:00.000Z' }],
    ['New York overnight window across the fall change', 'sat 22:00-06:00 America/New_York', '2026-10-31T12:00:00Z', '2026-11-01T18:00:00Z', { count: 540, first: '2026-11-01T02:00:00.000Z', last: '2026-11-01T10:59:00.000Z' }],
  ];
  it.each(table)('%s', (_label, window, from, to, expected) => {
    expect(openMinutes(window, from, to)).toEqual(expected);
  });
});

describe('windows crossing midnight belong to the day they start', () => {
  const matcher = compilePriority([rule('exact', 'k', 1, 'fri 22:00-06:00 UTC')], ON);
  const weeknights = compilePriority([rule('exact', 'k', 1, `${WEEKDAYS_LIST} 22:00-06:00 UTC`)], ON);
  // 2026-03-06 is a Friday.
  const table: Array<[string, string, boolean, boolean]> = [
    ['Friday 03:00 (Thursday night)', '2026-03-06T03:00:00Z', false, true],
    ['Friday 21:59', '2026-03-06T21:59:00Z', false, false],
    ['Friday 22:00', '2026-03-06T22:00:00Z', true, true],
    ['Saturday 00:00', '2026-03-07T00:00:00Z', true, true],
    ['Saturday 05:59', '2026-03-07T05:59:00Z', true, true],
    ['Saturday 06:00', '2026-03-07T06:00:00Z', false, false],
    ['Saturday 22:00', '2026-03-07T22:00:00Z', false, false],
    ['Monday 03:00 (Sunday night)', '2026-03-09T03:00:00Z', false, false],
    ['Tuesday 03:00 (Monday night)', '2026-03-10T03:00:00Z', false, true],
  ];
  it.each(table)('%s: fri-only %s, weeknights %s', (_label, iso, friday, weekdays) => {
    expect(matcher.resolve('k', at(iso)).priority === 1).toBe(friday);
    expect(weeknights.resolve('k', at(iso)).priority === 1).toBe(weekdays);
  });

  it('an overnight window ending at 00:00 runs to midnight', () => {
    expect(openMinutes('mon 20:00-00:00 UTC', '2026-03-09T00:00:00Z', '2026-03-11T00:00:00Z')).toEqual({
      count: 240,
      first: '2026-03-09T20:00:00.000Z',
      last: '2026-03-09T23:59:00.000Z',
    });
  });
});

describe('precedence: outside its window the next matching rule applies', () => {
  const OPEN = at('2026-03-04T11:00:00Z'); // Wednesday 12:00 in Berlin
  const CLOSED = at('2026-03-07T11:00:00Z'); // Saturday
  const WINDOW = `${WEEKDAYS_LIST} 08:00-20:00 Europe/Berlin`;
  const cases: Array<[string, MappingInput[], string, string, string]> = [
    ['windowed exact over an always-on prefix', [rule('exact', 'kp_a_1', 1, WINDOW, 'exact'), rule('prefix', 'kp_a_', 5, null, 'prefix')], 'kp_a_1', 'exact', 'prefix'],
    ['a longer windowed prefix over a shorter always-on one', [rule('prefix', 'kp_a_x', 1, WINDOW, 'long'), rule('prefix', 'kp_a_', 5, null, 'short')], 'kp_a_xyz', 'long', 'short'],
    ['a longer always-on prefix still wins over a shorter windowed one', [rule('prefix', 'kp_', 0, WINDOW, 'short'), rule('prefix', 'kp_a_', 5, null, 'long')], 'kp_a_xyz', 'long', 'long'],
    ['an always-on exact still wins over a windowed prefix', [rule('prefix', 'kp_', 0, WINDOW, 'prefix'), rule('exact', 'kp_a_1', 5, null, 'exact')], 'kp_a_1', 'exact', 'exact'],
    ['windowed suffix falls to an always-on contains', [rule('suffix', '_z', 2, WINDOW, 'suffix'), rule('contains', 'a', 6, null, 'contains')], 'kp_a_z', 'suffix', 'contains'],
    ['equal-length contains: the open windowed one wins over a lower priority number', [rule('contains', 'abc', 7, WINDOW, 'windowed'), rule('contains', 'xyz', 3, null, 'always')], 'kp_abc_xyz', 'windowed', 'always'],
    ['windowed regex over an earlier always-on regex', [rule('regex', '^kp_', 4, null, 'always'), rule('regex', '_z$', 1, WINDOW, 'windowed')], 'kp_a_z', 'windowed', 'always'],
    ['windowed prefix falls through to the default', [rule('prefix', 'kp_', 1, WINDOW, 'windowed')], 'kp_a', 'windowed', 'default'],
    ['windowed prefix falls through to a shorter windowed prefix that is open', [rule('prefix', 'kp_a', 1, WINDOW, 'weekday'), rule('prefix', 'kp_', 2, 'sat,sun 00:00-23:59 Europe/Berlin', 'weekend')], 'kp_a1', 'weekday', 'weekend'],
  ];
  it.each(cases)('%s', (_label, mappings, key, inside, outside) => {
    const matcher = compilePriority(mappings, ON);
    expect(matcher.resolve(key, OPEN).mappingId ?? 'default').toBe(inside);
    expect(matcher.resolve(key, CLOSED).mappingId ?? 'default').toBe(outside);
  });

  it('several windows on one pattern, and the always-on rule between them', () => {
    const matcher = compilePriority(
      [
        rule('prefix', 'kp_b_', 5, null, 'always'),
        rule('prefix', 'kp_b_', 2, `${WEEKDAYS_LIST} 08:00-20:00 Europe/Berlin`, 'day'),
        rule('prefix', 'kp_b_', 8, `${WEEKDAYS_LIST} 20:00-08:00 Europe/Berlin`, 'night'),
      ],
      ON,
    );
    expect(matcher.resolve('kp_b_1', at('2026-03-04T11:00:00Z')).mappingId).toBe('day');
    expect(matcher.resolve('kp_b_1', at('2026-03-04T22:00:00Z')).mappingId).toBe('night');
    expect(matcher.resolve('kp_b_1', at('2026-03-07T06:30:00Z')).mappingId).toBe('night'); // Friday's night runs into Saturday
    expect(matcher.resolve('kp_b_1', at('2026-03-07T11:00:00Z')).mappingId).toBe('always');
  });

  it('two open windowed rules on one pattern: the lower priority number wins', () => {
    const matcher = compilePriority([rule('exact', 'k', 6, 'all 00:00-12:00 UTC', 'a'), rule('exact', 'k', 4, 'all 06:00-18:00 UTC', 'b')], ON);
    expect(matcher.resolve('k', at('2026-03-04T05:00:00Z')).mappingId).toBe('a');
    expect(matcher.resolve('k', at('2026-03-04T07:00:00Z')).mappingId).toBe('b');
    expect(matcher.resolve('k', at('2026-03-04T13:00:00Z')).mappingId).toBe('b');
    expect(matcher.resolve('k', at('2026-03-04T19:00:00Z')).mappingId).toBeNull();
  });

  it('leaves out a mapping whose zone this runtime does not know, and says why', () => {
    const bad = { ...rule('exact', 'k', 1, 'mon 08:00-09:00 UTC', 'bad'), window: { days: ['mon'], start: '08:00', end: '09:00', timezone: 'Mars/Olympus_Mons' } } as MappingInput;
    const inverted = { ...rule('exact', 'j', 1, 'mon 08:00-09:00 UTC', 'same'), window: { days: ['mon'], start: '08:00', end: '08:00', timezone: 'UTC' } } as MappingInput;
    const matcher = compilePriority([bad, inverted, rule('exact', 'k', 3, null, 'good')], ON);
    expect(matcher.skipped.map((s) => s.id)).toEqual(['bad', 'same']);
    expect(matcher.skipped[0]!.error).toMatch(/^window: .*time ?zone/i);
    expect(matcher.skipped[1]!.error).toMatch(/start and end must differ/);
    expect(matcher.resolve('k', at('2026-03-09T08:30:00Z')).mappingId).toBe('good');
  });

  it('ignores windows while priority mapping is disabled', () => {
    const matcher = compilePriority([rule('exact', 'k', 1, 'all 00:00-23:59 UTC')], { enabled: false, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 });
    expect(matcher.resolve('k', at('2026-03-04T05:00:00Z')).priority).toBe(7);
  });
});

describe('windowed rules agree with a brute-force scan', () => {
  // Deterministic pseudo-random (mulberry32).
  function random(seed: number): () => number {
    let state = seed;
    return () => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe'];
  const KIND_RANK: Record<MatchType, number> = { exact: 0, prefix: 1, suffix: 2, contains: 3, regex: 4 };

  /** The wall clock read independently of the matcher (its own formatters, no per-minute cache). */
  const formats = new Map<string, Intl.DateTimeFormat>();
  function localOf(nowMs: number, timezone: string): { weekday: number; minute: number } {
    let format = formats.get(timezone);
    if (format === undefined) {
      format = new Intl.DateTimeFormat('en-GB', { timeZone: timezone, weekday: 'short', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' });
      formats.set(timezone, format);
    }
    const parts = format.formatToParts(nowMs);
    const get = (type: string) => parts.find((p) => p.type === type)!.value;
    return { weekday: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(get('weekday')), minute: Number(get('hour')) * 60 + Number(get('minute')) };
  }
  function open(window: ActiveWindow, nowMs: number): boolean {
    const { weekday, minute } = localOf(nowMs, window.timezone);
    const toMinute = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));
    const [start, end] = [toMinute(window.start), toMinute(window.end)];
    const listed = (day: number) => window.days.includes(WEEKDAYS[(day + 7) % 7]!);
    return start < end ? listed(weekday) && minute >= start && minute < end : (listed(weekday) && minute >= start) || (listed(weekday - 1) && minute < end);
  }
  function matches(m: MappingInput, key: string): boolean {
    switch (m.matchType) {
      case 'exact': return key === m.pattern;
      case 'prefix': return key.startsWith(m.pattern);
      case 'suffix': return key.endsWith(m.pattern);
      case 'contains': return key.includes(m.pattern);
      case 'regex': return new RegExp(m.pattern, 'u').test(key);
    }
  }
  /** Kind, then longer pattern (not for exact/regex), then windowed first, then (regex: created) priority, created, id. */
  function bruteForce(mappings: readonly MappingInput[], key: string, nowMs: number): string | null {
    const candidates = mappings.filter((m) => matches(m, key) && (m.window == null || open(m.window, nowMs)));
    candidates.sort((a, b) => {
      const kind = KIND_RANK[a.matchType] - KIND_RANK[b.matchType];
      if (kind !== 0) return kind;
      if (a.matchType !== 'exact' && a.matchType !== 'regex' && a.pattern.length !== b.pattern.length) return b.pattern.length - a.pattern.length;
      const timed = Number(b.window != null) - Number(a.window != null);
      if (timed !== 0) return timed;
      if (a.matchType !== 'regex' && a.priority !== b.priority) return a.priority - b.priority;
      return a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1);
    });
    return candidates[0]?.id ?? null;
  }

  it('300 mappings, 5 zones, 200 instants x 20 keys', () => {
    const next = random(15);
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const alphabet = 'abc';
    const text = (length: number) => Array.from({ length }, () => pick([...alphabet])).join('');
    const hhmm = () => `${String(Math.floor(next() * 24)).padStart(2, '0')}:${pick(['00', '15', '30', '45'])}`;
    const mappings: MappingInput[] = Array.from({ length: 300 }, (_, index) => {
      const matchType = pick<MatchType>(['exact', 'prefix', 'suffix', 'contains', 'regex']);
      const pattern = matchType === 'exact' ? `k_${text(4)}` : matchType === 'prefix' ? `k_${text(1 + (index % 3))}` : matchType === 'regex' ? `${text(2)}$` : text(1 + (index % 3));
      let window: ActiveWindow | null = null;
      if (next() < 0.6) {
        const start = hhmm();
        let end = hhmm();
        if (end === start) end = start === '00:00' ? '12:00' : '00:00';
        window = { days: WEEKDAYS.filter(() => next() < 0.5), start, end, timezone: pick(ZONES) };
        if (window.days.length === 0) window = { ...window, days: ['mon'] };
      }
      return { id: `m${String(index).padStart(3, '0')}`, pattern, matchType, priority: Math.floor(next() * 10), tenantId: null, tenantName: null, enabled: true, createdAtMs: Math.floor(next() * 50), window };
    });
    const matcher = compilePriority(mappings, ON);
    expect(matcher.skipped).toEqual([]);
    const keys = Array.from({ length: 20 }, () => `k_${text(4)}`);
    const base = at('2026-03-01T00:00:00Z');
    for (let i = 0; i < 200; i++) {
      const nowMs = base + Math.floor(next() * 300 * 86_400_000);
      for (const key of keys) expect(matcher.resolve(key, nowMs).mappingId, `${key} at ${new Date(nowMs).toISOString()}`).toBe(bruteForce(mappings, key, nowMs));
    }
  });
});

describe('ZoneClock', () => {
  it('reads the wall clock from the formatted text and from the parts alike', () => {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Berlin', weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const clock = new ZoneClock('Europe/Berlin');
    for (const iso of ['2026-03-04T22:59:00Z', '2026-03-04T23:05:00Z', '2026-03-29T00:59:00Z', '2026-03-29T01:00:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z']) {
      expect(clock.localAt(at(iso)), iso).toEqual(localTimeOf(parts.formatToParts(at(iso))));
    }
    expect(clock.localAt(at('2026-03-04T23:05:00Z'))).toEqual({ weekday: 3, minuteOfDay: 5 }); // Thursday 00:05 CET
    expect(localTimeOf(parts.formatToParts(at('2026-03-29T01:00:00Z')))).toEqual({ weekday: 6, minuteOfDay: 180 }); // Sunday 03:00 CEST
  });
});
