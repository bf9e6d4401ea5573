// Priority lookup with time-based rules (mapping windows) against the same lookup without them, in-process.
// Used by bench/core.ts; `node dist/bench/lib/window-bench.js` runs it alone.
import { compilePriority, type ActiveWindow, type MappingInput } from '../../src/core/priority/index.js';
import { clientKey, mappingRow, NOW_MS } from './synthetic.js';

const ON = { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 };
const ZONES = ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo'];
const WEEKDAYS: ActiveWindow['days'] = ['mon', 'tue', 'wed', 'thu', 'fri'];

export interface WindowBenchRow {
  readonly case: string;
  readonly withoutNs: number;
  readonly withNs: number;
  readonly addedNs: number;
}

type Matcher = ReturnType<typeof compilePriority>;

/** ns per lookup of one run; nowMs advances by stepMs per lookup. */
function lookupNs(matcher: Matcher, probes: readonly string[], startMs: number, stepMs: number, lookups: number): number {
  let sink = 0;
  let nowMs = startMs;
  const started = process.hrtime.bigint();
  for (let i = 0; i < lookups; i++) {
    sink += matcher.resolve(probes[i & 1023]!, nowMs).priority;
    nowMs += stepMs;
  }
  const ns = Number(process.hrtime.bigint() - started) / lookups;
  if (sink < 0) throw new Error('unreachable');
  return ns;
}

/** Best of `rounds` for each matcher, the two runs alternating so machine noise hits both alike. */
function compare(a: Matcher, b: Matcher, probes: readonly string[], stepMs: number, lookups: number, rounds = 7): [number, number] {
  let bestA = Number.POSITIVE_INFINITY;
  let bestB = Number.POSITIVE_INFINITY;
  for (let round = 0; round < rounds; round++) {
    const startMs = NOW_MS + round * 86_400_000;
    bestA = Math.min(bestA, lookupNs(a, probes, startMs, stepMs, lookups));
    bestB = Math.min(bestB, lookupNs(b, probes, startMs, stepMs, lookups));
  }
  return [bestA, bestB];
}

function inputs(count: number): MappingInput[] {
  return Array.from({ length: count }, (_, i) => mappingRow(i)).map((m) => ({
    ...m,
    tenantId: null,
    tenantName: null,
    createdAtMs: m.createdAt.getTime(),
  }));
}

/** The first `windowed` mappings also get a windowed twin (same pattern, another priority) in one of three zones. */
function withWindows(base: readonly MappingInput[], windowed: number): MappingInput[] {
  const twins = base.slice(0, windowed).map((m, i) => ({
    ...m,
    id: `${m.id}-w`,
    priority: (m.priority + 1) % 10,
    window: { days: WEEKDAYS, start: `${String(i % 24).padStart(2, '0')}:00`, end: `${String((i + 9) % 24).padStart(2, '0')}:30`, timezone: ZONES[i % ZONES.length]! },
  }));
  return [...base, ...twins];
}

export function windowBench(lookups = 1_000_000): WindowBenchRow[] {
  const rows: WindowBenchRow[] = [];
  const run = (label: string, count: number, windowed: number, stepMs: number, runLookups = lookups) => {
    const base = inputs(count);
    // Probes: keys of the windowed mappings' patterns (so the timed index is consulted and often wins) and others.
    const probes = Array.from({ length: 1024 }, (_, i) => clientKey((i * 7) % Math.max(1, count)));
    const [without, withW] = compare(compilePriority(base, ON), compilePriority(withWindows(base, windowed), ON), probes, stepMs, runLookups);
    rows.push({ case: label, withoutNs: Math.round(without), withNs: Math.round(withW), addedNs: Math.round(withW - without) });
  };
  // 1 ms between requests: about 1,000 requests per second, the open set recomputed once a minute.
  run('10 mappings + 10 windowed, 1k req/s', 10, 10, 1);
  run('10k mappings + 1k windowed (3 zones), 1k req/s', 10_000, 1_000, 1);
  // Every request in a new minute: the per-minute work (wall clocks, open set, cached index or a rebuild when the
  // open set is new) on each request. The worst case, not a workload: real traffic pays it once a minute.
  run('10 mappings + 10 windowed, every request a new minute', 10, 10, 60_000, 200_000);
  run('10k mappings + 1k windowed, every request a new minute', 10_000, 1_000, 60_000, 2_000);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) console.table(windowBench());
