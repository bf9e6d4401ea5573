// A priority mapping's active window as an operator gives it: an object {days, start, end, timezone} (admin API,
// keypool.yaml) or the same in one line, `mon-fri 08:00-20:00 Europe/Berlin` (CLI --window, also accepted in YAML).
// Validated into the canonical ActiveWindow: days lower-case, deduplicated, in week order (mon first).
import type { ActiveWindow, Weekday } from '../../core/priority/index.js';
import { isTimeZone, listedTimeZoneFor, WEEKDAYS, WINDOW_TIME } from '../rules.js';
import { isPlainObject, quote, type Fields } from '../validated.js';

const WINDOW_KEYS = ['days', 'start', 'end', 'timezone'] as const;

export const WINDOW_SYNTAX = "DAYS HH:MM-HH:MM ZONE, e.g. 'mon-fri 08:00-20:00 Europe/Berlin' or 'sat,sun 22:00-06:00 UTC'";

/**
 * Reads and checks the `window` field of `f`: undefined when absent or invalid (errors added to f, naming
 * `window.days`, `window.start`, `window.end`, `window.timezone`), null when given as null (no window).
 */
export function checkWindowIn(f: Fields): ActiveWindow | null | undefined {
  if (!f.has('window')) return undefined;
  const raw = f.raw('window');
  if (raw === null) return null;
  let input: unknown = raw;
  if (typeof raw === 'string') {
    const parsed = parseWindowText(raw);
    if (typeof parsed === 'string') {
      f.add('window', 'invalid_format', `window: ${parsed}`);
      return undefined;
    }
    input = parsed;
  }
  if (!isPlainObject(input)) {
    f.add('window', 'invalid_type', `window: must be an object {days, start, end, timezone}, a string (${WINDOW_SYNTAX}) or null`);
    return undefined;
  }
  const errorsBefore = f.errors.length;
  for (const key of Object.keys(input)) {
    if (!(WINDOW_KEYS as readonly string[]).includes(key)) {
      f.add(`window.${key}`, 'unknown_field', `window.${key}: unknown field; known: ${WINDOW_KEYS.join(', ')}`);
    }
  }
  const days = checkDays(f, input['days']);
  const start = checkTime(f, 'start', input['start']);
  const end = checkTime(f, 'end', input['end']);
  if (start !== undefined && start === end) {
    f.add('window.end', 'invalid_format', 'window.end: must differ from window.start (for every hour of the listed days, leave the window out)');
  }
  const timezone = checkTimeZone(f, input['timezone']);
  if (f.errors.length > errorsBefore) return undefined;
  return { days: days!, start: start!, end: end!, timezone: timezone! };
}

function checkDays(f: Fields, value: unknown): Weekday[] | undefined {
  if (value === undefined) return void f.add('window.days', 'required', 'window.days is required');
  if (!Array.isArray(value)) return void f.add('window.days', 'invalid_type', `window.days: must be a list of days (${WEEKDAYS.join(', ')})`);
  if (value.length === 0) return void f.add('window.days', 'too_short', 'window.days: must list at least one day');
  const listed = new Set<Weekday>();
  for (const item of value) {
    const day = typeof item === 'string' ? item.trim().toLowerCase() : item;
    if (!(WEEKDAYS as readonly unknown[]).includes(day)) {
      return void f.add('window.days', 'invalid_choice', `window.days: ${quote(item)} is not one of ${WEEKDAYS.join(', ')}`);
    }
    listed.add(day as Weekday);
  }
  return WEEKDAYS.filter((day) => listed.has(day));
}

function checkTime(f: Fields, name: 'start' | 'end', value: unknown): string | undefined {
  if (value === undefined) return void f.add(`window.${name}`, 'required', `window.${name} is required`);
  if (typeof value !== 'string' || !WINDOW_TIME.test(value)) {
    return void f.add(`window.${name}`, 'invalid_format', `window.${name}: ${quote(value)} is not a time HH:MM (00:00-23:59)`);
  }
  return value;
}

function checkTimeZone(f: Fields, value: unknown): string | undefined {
  if (value === undefined) return void f.add('window.timezone', 'required', 'window.timezone is required');
  if (!isTimeZone(value)) {
    const listed = typeof value === 'string' ? listedTimeZoneFor(value) : null;
    if (listed !== null) {
      return void f.add('window.timezone', 'invalid_choice', `window.timezone: ${quote(value)} is an alias; use the name this runtime lists, ${quote(listed)}`);
    }
    return void f.add(
      'window.timezone',
      'invalid_choice',
      `window.timezone: ${quote(value)} is not a known IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)`,
    );
  }
  return value;
}

/**
 * `mon-fri 08:00-20:00 Europe/Berlin` -> {days, start, end, timezone} (values not yet checked), or why the text is
 * not in that shape. Days: comma-separated days and ranges (`mon,wed-fri`; a range may wrap: `fri-mon`).
 */
export function parseWindowText(text: string): { days: string[]; start: string; end: string; timezone: string } | string {
  const parts = text.trim().split(/\s+/);
  const times = parts[1]?.split('-') ?? [];
  if (parts.length !== 3 || times.length !== 2) return `${quote(text)} is not ${WINDOW_SYNTAX}`;
  const days: string[] = [];
  for (const item of parts[0]!.toLowerCase().split(',')) {
    const range = item.split('-');
    const first = WEEKDAYS.indexOf(range[0] as Weekday);
    const last = range.length === 2 ? WEEKDAYS.indexOf(range[1] as Weekday) : first;
    if (range.length > 2 || first < 0 || last < 0) return `${quote(item)} is not a day or a day range (${WEEKDAYS.join(', ')}; mon-fri)`;
    for (let day = first; ; day = (day + 1) % 7) {
      days.push(WEEKDAYS[day]!);
      if (day === last) break;
    }
  }
  return { days, start: times[0]!, end: times[1]!, timezone: parts[2]! };
}

/** The one-line form of a window (CLI output, plans): `mon,tue,wed,thu,fri 08:00-20:00 Europe/Berlin`. */
export function windowText(window: ActiveWindow): string {
  return `${compactDays(window.days)} ${window.start}-${window.end} ${window.timezone}`;
}

/** mon,tue,wed,thu,fri -> mon-fri; runs of three or more days become ranges. */
function compactDays(days: readonly Weekday[]): string {
  const indexes = days.map((day) => WEEKDAYS.indexOf(day)).sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < indexes.length; ) {
    let j = i;
    while (j + 1 < indexes.length && indexes[j + 1] === indexes[j]! + 1) j++;
    if (j - i >= 2) out.push(`${WEEKDAYS[indexes[i]!]}-${WEEKDAYS[indexes[j]!]}`);
    else for (let k = i; k <= j; k++) out.push(WEEKDAYS[indexes[k]!]!);
    i = j + 1;
  }
  return out.join(',');
}
