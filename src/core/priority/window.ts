// Active windows of priority mappings: days of the week and a start/end wall-clock time in an IANA time zone
// (`mon-fri 08:00-20:00 Europe/Berlin`). Pure computation: the instant comes in as nowMs, and Intl only converts it
// to the zone's wall clock. One formatter per zone is built when the snapshot is compiled, never per request.
//
// Semantics (documented in the README, "Time-based priority rules"):
// - A window is active while the zone's wall clock reads a listed day and a time in [start, end).
// - end < start crosses midnight: `fri 22:00-06:00` runs Friday 22:00 to Saturday 06:00. Its days name the day the
//   window starts, so that example is active on Saturday 00:00-05:59 and not on Friday 00:00-05:59.
// - Wall clock, not elapsed time: in a spring-forward gap the skipped local times never occur (a window lying wholly
//   inside the gap does not open that day); in a fall-back overlap the repeated local times occur twice and the
//   window is active both times.

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** A mapping's active window as stored and shown: days in week order (mon first), times as HH:MM. */
export interface ActiveWindow {
  readonly days: readonly Weekday[];
  /** HH:MM, 00:00-23:59; inclusive. */
  readonly start: string;
  /** HH:MM, 00:00-23:59; exclusive. Earlier than start: the window ends on the next day. */
  readonly end: string;
  /** IANA zone name (`Europe/Berlin`) or `UTC`. */
  readonly timezone: string;
}

/** A zone's wall clock at one instant. */
export interface LocalTime {
  /** 0 = Monday ... 6 = Sunday (WEEKDAYS order). */
  readonly weekday: number;
  /** Minutes since local midnight, 0-1439. */
  readonly minuteOfDay: number;
}

/** A window's start or end: HH:MM on a 24-hour clock, 00:00-23:59 (re-exported by src/catalog/rules.ts). */
export const WINDOW_TIME = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;
const FORMATTED = /^([A-Z][a-z]{2}) ([0-9]{2}):([0-9]{2})$/;
const SHORT_WEEKDAY: Readonly<Record<string, number>> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 };

/** Minutes since midnight of an HH:MM string, or null when it is not one. */
export function minuteOfDay(text: string): number | null {
  const match = WINDOW_TIME.exec(text);
  return match === null ? null : Number(match[1]) * 60 + Number(match[2]);
}

/** Reads a zone's wall clock. Built once per zone per snapshot (an Intl.DateTimeFormat costs tens of µs to build). */
export class ZoneClock {
  readonly timezone: string;
  readonly #format: Intl.DateTimeFormat;

  /** @throws RangeError when the runtime does not know the zone. */
  constructor(timezone: string) {
    this.timezone = timezone;
    this.#format = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
  }

  localAt(nowMs: number): LocalTime {
    // format() is about 3x cheaper than formatToParts(); en-US with these options reads `Wed 14:05`. Anything else
    // (another ICU's layout) takes the parts path.
    const text = this.#format.format(nowMs);
    const match = FORMATTED.exec(text);
    const weekday = match === null ? undefined : SHORT_WEEKDAY[match[1]!];
    if (match !== null && weekday !== undefined) return { weekday, minuteOfDay: (Number(match[2]) % 24) * 60 + Number(match[3]) };
    return this.#fromParts(nowMs);
  }

  #fromParts(nowMs: number): LocalTime {
    return localTimeOf(this.#format.formatToParts(nowMs));
  }
}

/** A LocalTime from a formatter's parts (weekday short, hour, minute): the layout-independent path. */
export function localTimeOf(parts: readonly Intl.DateTimeFormatPart[]): LocalTime {
  let weekday = 0;
  let hour = 0;
  let minute = 0;
  for (const part of parts) {
    if (part.type === 'weekday') weekday = SHORT_WEEKDAY[part.value] ?? 0;
    else if (part.type === 'hour') hour = Number(part.value) % 24;
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return { weekday, minuteOfDay: hour * 60 + minute };
}

/** A window ready to evaluate against a LocalTime of its zone. */
export interface CompiledWindow {
  readonly clock: ZoneClock;
  /** Bit d set = WEEKDAYS[d] listed. */
  readonly dayMask: number;
  readonly startMinute: number;
  readonly endMinute: number;
}

/** Returns why a window is refused, or null (the core's own check; the catalog gives field-level errors). */
export function windowProblem(window: ActiveWindow): string | null {
  if (!Array.isArray(window.days) || window.days.length === 0) return 'days must list at least one day';
  if (window.days.some((day) => !(WEEKDAYS as readonly string[]).includes(day))) return `days must be among ${WEEKDAYS.join(', ')}`;
  const start = minuteOfDay(window.start);
  const end = minuteOfDay(window.end);
  if (start === null || end === null) return 'start and end must be HH:MM (00:00-23:59)';
  if (start === end) return 'start and end must differ';
  return null;
}

/**
 * Compiles a window, sharing one ZoneClock per zone through `clocks`.
 * @throws RangeError for a malformed window or a zone this runtime does not know (the caller skips the mapping).
 */
export function compileWindow(window: ActiveWindow, clocks: Map<string, ZoneClock>): CompiledWindow {
  const problem = windowProblem(window);
  if (problem !== null) throw new RangeError(problem);
  let clock = clocks.get(window.timezone);
  if (clock === undefined) {
    clock = new ZoneClock(window.timezone);
    clocks.set(window.timezone, clock);
  }
  let dayMask = 0;
  for (const day of window.days) dayMask |= 1 << WEEKDAYS.indexOf(day);
  return { clock, dayMask, startMinute: minuteOfDay(window.start)!, endMinute: minuteOfDay(window.end)! };
}

/** Whether the window is open at a wall-clock time of its zone. */
export function isOpen(window: CompiledWindow, local: LocalTime): boolean {
  const { dayMask, startMinute, endMinute } = window;
  const time = local.minuteOfDay;
  const today = (dayMask & (1 << local.weekday)) !== 0;
  if (startMinute < endMinute) return today && time >= startMinute && time < endMinute;
  // Crosses midnight: the part after midnight belongs to the previous day's window.
  const yesterday = (dayMask & (1 << ((local.weekday + 6) % 7))) !== 0;
  return (today && time >= startMinute) || (yesterday && time < endMinute);
}
