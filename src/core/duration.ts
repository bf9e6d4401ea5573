// Duration parsing for the two places durations arrive as text: operator input (CLI and admin API:
// `--expires-in 90d`, `--grace 24h`) and OpenAI-style rate-limit reset headers (Go's time.Duration format).
// Both return null on anything they do not fully understand: callers turn that into a usage error or ignore the header.

const MS_PER_SECOND = 1_000;
const MS_PER_MINUTE = 60 * MS_PER_SECOND;
const MS_PER_HOUR = 60 * MS_PER_MINUTE;
const MS_PER_DAY = 24 * MS_PER_HOUR;

/**
 * Longest duration an operator may type. Anything longer is almost certainly a typo (a key that
 * should never expire is created without --expires-in), and it keeps `nowMs + duration` inside the
 * range a JavaScript Date can represent.
 */
export const MAX_HUMAN_DURATION_MS = 100 * 365 * MS_PER_DAY;

/** Units operators may use, largest first: a duration must list them in this order, each at most once. */
const HUMAN_UNITS_MS: ReadonlyArray<readonly [unit: string, ms: number]> = [
  ['d', MS_PER_DAY],
  ['h', MS_PER_HOUR],
  ['m', MS_PER_MINUTE],
  ['s', MS_PER_SECOND],
  ['ms', 1],
];

// `ms` must be tried before `m` and `s`, so the alternation lists it first.
const HUMAN_PART = /(\d{1,15})(ms|d|h|m|s)/y;

/**
 * Parses an operator duration: `90d`, `24h`, `30m`, `45s`, `500ms`, or a combination in descending
 * unit order such as `1h30m` or `2d12h`. Whole numbers only, lower-case units, surrounding
 * whitespace ignored, `0s` allowed (for example an immediate rotation without grace).
 * Returns null for empty input, signs, fractions, unknown or repeated or out-of-order units, and
 * durations above MAX_HUMAN_DURATION_MS.
 */
export function parseHumanDurationMs(text: string): number | null {
  if (typeof text !== 'string') return null;
  const trimmed = text.trim();
  if (trimmed.length === 0 || trimmed.length > 64) return null;
  let totalMs = 0;
  let position = 0;
  let lastUnitIndex = -1;
  while (position < trimmed.length) {
    HUMAN_PART.lastIndex = position;
    const match = HUMAN_PART.exec(trimmed);
    if (match === null) return null;
    const unitIndex = HUMAN_UNITS_MS.findIndex(([unit]) => unit === match[2]);
    // Descending, non-repeating units: `30m1h` and `1h1h` are more likely mistakes than intent.
    if (unitIndex <= lastUnitIndex) return null;
    lastUnitIndex = unitIndex;
    totalMs += Number(match[1]) * (HUMAN_UNITS_MS[unitIndex]?.[1] ?? Number.NaN);
    if (!(totalMs <= MAX_HUMAN_DURATION_MS)) return null;
    position = HUMAN_PART.lastIndex;
  }
  return totalMs;
}

const GO_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign
  'μs': 1e-3, // U+03BC Greek mu: Go accepts both spellings
  ms: 1,
  s: MS_PER_SECOND,
  m: MS_PER_MINUTE,
  h: MS_PER_HOUR,
};

// One `<number><unit>` element of a Go duration. The number may have a fraction (`2m59.56s`).
const GO_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Parses Go's time.Duration text (`1s`, `6m0s`, `12ms`, `2m59.56s`, `1h2m3.5s`, `500us`, `0`) into
 * milliseconds, possibly fractional (`500us` -> 0.5). Callers that schedule with it round up.
 * Negative durations return null: every caller uses this for "time until reset", which is never negative.
 */
export function parseGoDurationMs(text: string): number | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return null;
  let source = text;
  if (source.startsWith('+')) source = source.slice(1);
  if (source === '0') return 0;
  if (source.length === 0) return null;
  let totalMs = 0;
  let position = 0;
  while (position < source.length) {
    GO_PART.lastIndex = position;
    const match = GO_PART.exec(source);
    if (match === null) return null;
    const unitMs = GO_UNITS_MS[match[2] ?? ''];
    if (unitMs === undefined) return null;
    totalMs += Number(match[1]) * unitMs;
    position = GO_PART.lastIndex;
  }
  if (!Number.isFinite(totalMs) || totalMs > Number.MAX_SAFE_INTEGER) return null;
  // Go durations are whole nanoseconds; rounding there undoes binary noise (`2.01s` * 1000 = 2009.999...).
  return Math.round(totalMs * 1e6) / 1e6;
}
