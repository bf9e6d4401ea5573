// Priority mappings: operator patterns matched against the presented client key to give a request its
// priority (0 = highest) and tenant. Compiled once per snapshot; resolve() runs on every request.
//
// Precedence among matching rules (see match-index.ts): exact > longest prefix > longest suffix > longest
// contains > regex (created order) > default; equal kind and length: lowest priority number, earliest created,
// smallest id. A rule with an active window (window.ts) takes part only while its window is open; when it is
// closed the next matching rule applies. Among equally specific matches an open windowed rule wins over a rule
// without a window (so `prefix kp_batch_` can be P7 on weekday office hours and P3 otherwise).
//
// Cost: rules without a window live in one MatchIndex, exactly as before windows existed. Rules with a window
// live in a second MatchIndex holding only those open at the request's minute: which ones are open can change
// only on a minute boundary (windows are HH:MM and UTC offsets are whole minutes), so it is worked out once per
// minute and the index per distinct open set is kept (bounded). A request then pays one minute comparison and
// one extra lookup.
import type { MatchType, PriorityMatcher, PriorityResolution, PrioritySettings } from '../types.js';
import type { Entry } from './entry.js';
import { MatchIndex, timedWins } from './match-index.js';
import { validatePattern } from './pattern.js';
import { compileWindow, isOpen, type ActiveWindow, type CompiledWindow, type LocalTime, type ZoneClock } from './window.js';

export { MAX_PATTERN_LENGTH, validatePattern } from './pattern.js';
export { MAX_MATCH_INPUT, MAX_REGEX_COST, MAX_REGEX_REPEAT } from './regex-safety.js';
export { WEEKDAYS, WINDOW_TIME, minuteOfDay, windowProblem, type ActiveWindow, type Weekday } from './window.js';

export interface MappingInput {
  readonly id: string;
  readonly pattern: string;
  readonly matchType: MatchType;
  /** 0 is the highest priority. */
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  /** Disabled mappings are kept in the database but ignored by the matcher. */
  readonly enabled: boolean;
  /** Orders regex mappings (first created is tried first) and breaks ties. */
  readonly createdAtMs: number;
  /** When set, the mapping applies only while this window is open; null or absent: always. */
  readonly window?: ActiveWindow | null;
}

/** Why an explanation matched (admin "resolve" endpoint). */
export interface PriorityExplanation {
  readonly resolution: PriorityResolution;
  /** null when the default applied. */
  readonly matchType: MatchType | null;
  readonly pattern: string | null;
  /** The matched mapping's window (open at the instant asked about), null when it has none or the default applied. */
  readonly window: ActiveWindow | null;
}

export interface SkippedMapping {
  readonly id: string;
  readonly error: string;
}

export interface CompiledPriority extends PriorityMatcher {
  /** Like resolve, also naming the rule that matched. */
  explain(presentedKey: string, nowMs: number): PriorityExplanation;
  /** Enabled mappings left out because their pattern or window is invalid (rows written before validation tightened). */
  readonly skipped: readonly SkippedMapping[];
  /** Number of mappings in use. */
  readonly size: number;
  /** Number of mappings in use that carry a window. */
  readonly timedSize: number;
}

/** Distinct sets of open windowed rules whose index is kept; past it the cache starts over. */
const MAX_OPEN_SETS = 64;
const MINUTE_MS = 60_000;

interface TimedEntry {
  readonly entry: Entry;
  readonly window: CompiledWindow;
}

/** Compiles the mappings of one snapshot. Disabled settings give a matcher that always returns the default. */
export function compilePriority(mappings: readonly MappingInput[], settings: PrioritySettings): CompiledPriority {
  const defaultResolution: PriorityResolution = Object.freeze({
    priority: settings.defaultPriority,
    tenantId: null,
    tenantName: null,
    mappingId: null,
  });
  if (!settings.enabled) return new PriorityIndex(defaultResolution, [], [], []);
  const always: Entry[] = [];
  const timed: TimedEntry[] = [];
  const skipped: SkippedMapping[] = [];
  const clocks = new Map<string, ZoneClock>();
  for (const mapping of mappings) {
    if (!mapping.enabled) continue;
    const error = validatePattern(mapping.matchType, mapping.pattern);
    if (error !== null) {
      skipped.push({ id: mapping.id, error });
      continue;
    }
    if (mapping.window == null) {
      always.push(toEntry(mapping, null));
      continue;
    }
    try {
      timed.push({ entry: toEntry(mapping, mapping.window), window: compileWindow(mapping.window, clocks) });
    } catch (windowError) {
      // A zone this runtime's ICU does not know (the row was written by a newer one) or a malformed row.
      skipped.push({ id: mapping.id, error: `window: ${(windowError as Error).message}` });
    }
  }
  return new PriorityIndex(defaultResolution, always, timed, skipped);
}

function toEntry(mapping: MappingInput, window: ActiveWindow | null): Entry {
  return {
    id: mapping.id,
    pattern: mapping.pattern,
    matchType: mapping.matchType,
    priority: mapping.priority,
    createdAtMs: mapping.createdAtMs,
    window: window === null ? null : Object.freeze({ ...window, days: Object.freeze([...window.days]) }),
    resolution: Object.freeze({
      priority: mapping.priority,
      tenantId: mapping.tenantId,
      tenantName: mapping.tenantName,
      mappingId: mapping.id,
    }),
  };
}

const NOTHING_OPEN = new MatchIndex([]);

class PriorityIndex implements CompiledPriority {
  readonly skipped: readonly SkippedMapping[];
  readonly size: number;
  readonly timedSize: number;
  readonly #defaultResolution: PriorityResolution;
  readonly #always: MatchIndex;
  readonly #timed: readonly TimedEntry[];
  /** Index of the windowed rules open during #openMinute (minutes since the epoch). */
  #openMinute = Number.NaN;
  #openIndex: MatchIndex = NOTHING_OPEN;
  readonly #indexByOpenSet = new Map<string, MatchIndex>();

  constructor(defaultResolution: PriorityResolution, always: readonly Entry[], timed: readonly TimedEntry[], skipped: readonly SkippedMapping[]) {
    this.#defaultResolution = defaultResolution;
    this.skipped = Object.freeze([...skipped]);
    this.size = always.length + timed.length;
    this.timedSize = timed.length;
    this.#always = new MatchIndex(always);
    this.#timed = timed;
  }

  resolve(presentedKey: string, nowMs: number): PriorityResolution {
    return this.#match(presentedKey, nowMs)?.resolution ?? this.#defaultResolution;
  }

  explain(presentedKey: string, nowMs: number): PriorityExplanation {
    const entry = this.#match(presentedKey, nowMs);
    if (entry === null) return { resolution: this.#defaultResolution, matchType: null, pattern: null, window: null };
    return { resolution: entry.resolution, matchType: entry.matchType, pattern: entry.pattern, window: entry.window };
  }

  #match(key: string, nowMs: number): Entry | null {
    if (typeof key !== 'string' || this.size === 0) return null;
    const always = this.#always.match(key);
    if (this.#timed.length === 0) return always;
    const timed = this.#openAt(nowMs).match(key);
    if (timed === null) return always;
    return always === null || timedWins(timed, always) ? timed : always;
  }

  /** The index of windowed rules open at nowMs; a non-finite instant opens none. */
  #openAt(nowMs: number): MatchIndex {
    if (!Number.isFinite(nowMs)) return NOTHING_OPEN;
    const minute = Math.floor(nowMs / MINUTE_MS);
    if (minute === this.#openMinute) return this.#openIndex;
    const locals = new Map<ZoneClock, LocalTime>();
    const open: Entry[] = [];
    let openSet = '';
    for (let index = 0; index < this.#timed.length; index++) {
      const { entry, window } = this.#timed[index]!;
      let local = locals.get(window.clock);
      if (local === undefined) {
        local = window.clock.localAt(minute * MINUTE_MS);
        locals.set(window.clock, local);
      }
      if (!isOpen(window, local)) continue;
      open.push(entry);
      openSet += `${index},`;
    }
    let openIndex = this.#indexByOpenSet.get(openSet);
    if (openIndex === undefined) {
      if (this.#indexByOpenSet.size >= MAX_OPEN_SETS) this.#indexByOpenSet.clear();
      openIndex = open.length === 0 ? NOTHING_OPEN : new MatchIndex(open);
      this.#indexByOpenSet.set(openSet, openIndex);
    }
    this.#openMinute = minute;
    this.#openIndex = openIndex;
    return openIndex;
  }
}
