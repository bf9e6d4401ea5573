// Request quotas per client key and per tenant, the calendar day of the quota zone, and the priority reserves.
// Pure: no I/O, no clock (time comes in as nowMs). The memory store runs admitWithQuotas; the Redis admission script
// (src/stores/redis-scripts.ts) mirrors it, and the rate-state contract suite holds both to the same behaviour.
//
// Quota model: requests per minute over the same sliding WINDOW_MS as an account's rpm, and requests per calendar day
// of KEYPOOL_QUOTA_TZ. A request is charged to its key's and its tenant's windows only when it is admitted: a request
// refused by a quota, by the priority reserve or by a full pool counts nowhere (all or none).
//
// Token quotas (tpm/tpd) work the same way in tokens: a request admitted with AdmitRequest.tokens reserves them in its
// key's and tenant's token minute window (a TokenLog, src/core/token-window.ts) and token day counter; reconcile moves
// the reservation to the actual usage in the same windows (reconcileQuotaTokens).
import { admitFirst, RequestLog, WINDOW_MS, type AccountState, type SlotOf } from './capacity.js';
import { reservedTokens, TokenLog, tokenBlock } from './token-window.js';
import type { AdmitRequest, AdmitResult, DayBounds, QuotaSubject, QuotaWindow } from './admission.js';

/** Priority reserves when the setting is not set: P0-P2 0 %, P3-P5 10 %, P6-P9 25 % of an account's capacity. */
export const DEFAULT_PRIORITY_RESERVE: readonly number[] = Object.freeze([0, 0, 0, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25, 0.25]);

/** The reserve a request of `priority` keeps free for higher priorities (0 for a priority outside the table). */
export function reserveFor(reserves: readonly number[], priority: number): number {
  return reserves[priority] ?? 0;
}

/** Usage of one quota subject: its minute window and the count of the current day. */
export interface QuotaState {
  readonly minute: RequestLog;
  /** Start of the day dayCount belongs to; a different day reads as 0. */
  dayStartMs: number;
  dayCount: number;
  /** Tokens reserved/reconciled in the last WINDOW_MS, by lease id (only with a tpm limit). */
  readonly tokenMinute: TokenLog;
  /** Start of the day tokenDayCount belongs to; a different day reads as 0. */
  tokenDayStartMs: number;
  tokenDayCount: number;
}

export function newQuotaState(): QuotaState {
  return { minute: new RequestLog(), dayStartMs: 0, dayCount: 0, tokenMinute: new TokenLog(), tokenDayStartMs: 0, tokenDayCount: 0 };
}

/** The day [startMs, endMs) of `bounds` that holds nowMs (the nearest one when nowMs lies outside all three). */
export function pickDay(bounds: DayBounds, nowMs: number): readonly [startMs: number, endMs: number] {
  if (nowMs < bounds[1]) return [bounds[0], bounds[1]];
  if (nowMs < bounds[2]) return [bounds[1], bounds[2]];
  return [bounds[2], bounds[3]];
}

const DAY_MS = 86_400_000;

/** UTC calendar days around nowMs (the default quota zone), without Intl. */
export function utcDayBounds(nowMs: number): DayBounds {
  const start = Math.floor(nowMs / DAY_MS) * DAY_MS;
  return [start - DAY_MS, start, start + DAY_MS, start + 2 * DAY_MS];
}

/**
 * A quota window that is full: which one and when it frees (minute: the oldest admissions leave; day: the day ends;
 * null: never by itself, the request alone is larger than the token limit).
 */
export interface QuotaBlock {
  readonly window: QuotaWindow;
  readonly freeAtMs: number | null;
}

/**
 * Is there room for one more request (of `tokens` tokens, 0 = not counted) in `subject`'s windows? null = yes.
 * Order: requests per minute, per day, tokens per minute, per day. Prunes the minute windows.
 */
export function quotaBlock(state: QuotaState, subject: QuotaSubject, nowMs: number, day: readonly [number, number], tokens = 0): QuotaBlock | null {
  const rpm = subject.rpmLimit;
  if (rpm !== null) {
    state.minute.prune(nowMs - WINDOW_MS);
    if (state.minute.size >= rpm) return { window: 'minute', freeAtMs: state.minute.oldest() + WINDOW_MS };
  }
  const rpd = subject.rpdLimit;
  if (rpd !== null) {
    const used = state.dayStartMs === day[0] ? state.dayCount : 0;
    if (used >= rpd) return { window: 'day', freeAtMs: day[1] };
  }
  if (tokens > 0) {
    const tpm = subject.tpmLimit ?? null;
    if (tpm !== null) {
      const freeAtMs = tokenBlock(state.tokenMinute, tpm, tokens, nowMs);
      if (freeAtMs !== undefined) return { window: 'token_minute', freeAtMs };
    }
    const tpd = subject.tpdLimit ?? null;
    if (tpd !== null) {
      const used = state.tokenDayStartMs === day[0] ? state.tokenDayCount : 0;
      if (used + tokens > tpd) return { window: 'token_day', freeAtMs: tokens > tpd ? null : day[1] };
    }
  }
  return null;
}

/**
 * Charges one admitted request (and its `tokens`, under `leaseId`) to `subject`'s limited windows. Call only right
 * after quotaBlock said null.
 */
export function recordQuota(state: QuotaState, subject: QuotaSubject, nowMs: number, day: readonly [number, number], leaseId = '', tokens = 0): void {
  if (subject.rpmLimit !== null) state.minute.push(nowMs, Math.max(subject.rpmLimit, 1));
  if (subject.rpdLimit !== null) {
    if (state.dayStartMs !== day[0]) {
      state.dayStartMs = day[0];
      state.dayCount = 0;
    }
    state.dayCount++;
  }
  if (tokens > 0) {
    if ((subject.tpmLimit ?? null) !== null) state.tokenMinute.add(leaseId, nowMs, tokens);
    if ((subject.tpdLimit ?? null) !== null) {
      if (state.tokenDayStartMs !== day[0]) {
        state.tokenDayStartMs = day[0];
        state.tokenDayCount = 0;
      }
      state.tokenDayCount += tokens;
    }
  }
}

/** Does `subject` count tokens (a tpm or tpd limit)? Only such subjects are reconciled. */
export function countsTokens(subject: QuotaSubject): boolean {
  return (subject.tpmLimit ?? null) !== null || (subject.tpdLimit ?? null) !== null;
}

/**
 * Reconcile: moves admission `leaseId`'s reserved tokens by deltaTokens (actual - reserved) in the subject's token
 * minute window (where the admission stands in it) and in the token count of `admittedDay` (the day the admission was
 * charged to; a day already over is left alone). Never below 0.
 */
export function reconcileQuotaTokens(state: QuotaState, leaseId: string, admittedDay: readonly [number, number], deltaTokens: number, nowMs: number): void {
  state.tokenMinute.prune(nowMs - WINDOW_MS);
  state.tokenMinute.adjust(leaseId, deltaTokens);
  if (state.tokenDayStartMs === admittedDay[0]) state.tokenDayCount = Math.max(0, state.tokenDayCount + deltaTokens);
}

/**
 * Quotas first (key, then tenant; minute, then day): the first full window refuses with reason 'quota'. Then the
 * accounts (admitFirst, with the priority reserve). Only an admitted request is charged to the quotas.
 */
export function admitWithQuotas(
  stateOf: (accountId: string) => AccountState,
  quotaOf: (subject: QuotaSubject) => QuotaState,
  request: AdmitRequest,
  leaseId: string,
  slotOf?: SlotOf,
): AdmitResult {
  const quotas = request.quotas;
  if (quotas === undefined || quotas.length === 0) return admitFirst(stateOf, request, leaseId, slotOf);
  const nowMs = request.nowMs;
  const tokens = reservedTokens(request.tokens);
  const day = pickDay(request.dayBounds ?? utcDayBounds(nowMs), nowMs);
  const states: QuotaState[] = new Array<QuotaState>(quotas.length);
  for (let i = 0; i < quotas.length; i++) {
    const subject = quotas[i]!;
    const state = (states[i] = quotaOf(subject));
    const block = quotaBlock(state, subject, nowMs, day, tokens);
    if (block !== null) return { ok: false, reason: 'quota', retryAtMs: block.freeAtMs, limit: { scope: subject.scope, window: block.window } };
  }
  const result = admitFirst(stateOf, request, leaseId, slotOf);
  if (result.ok) for (let i = 0; i < quotas.length; i++) recordQuota(states[i]!, quotas[i]!, nowMs, day, leaseId, tokens);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Calendar days in a time zone (Intl is computation, not I/O; the caller caches the result per day)
// ---------------------------------------------------------------------------------------------

const FORMATTERS = new Map<string, Intl.DateTimeFormat>();
/** Bound on cached formatters (one per zone name asked for; a deployment uses one). */
const MAX_FORMATTERS = 64;

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = FORMATTERS.get(timeZone);
  if (formatter === undefined) {
    if (FORMATTERS.size >= MAX_FORMATTERS) FORMATTERS.clear();
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    FORMATTERS.set(timeZone, formatter);
  }
  return formatter;
}

/** The wall-clock time of `instantMs` in `timeZone`, read as if it were UTC (epoch ms, whole seconds). */
function wallMs(instantMs: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(instantMs)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
}

/** The zone's UTC offset at `instantMs` (ms; positive east of Greenwich). */
function offsetMs(instantMs: number, timeZone: string): number {
  const whole = Math.floor(instantMs / 1000) * 1000;
  return wallMs(whole, timeZone) - whole;
}

/** The local calendar date of `instantMs` in `timeZone`, as the UTC midnight of that date. */
function localDateMs(instantMs: number, timeZone: string): number {
  return Math.floor(wallMs(instantMs, timeZone) / DAY_MS) * DAY_MS;
}

/**
 * The first instant of the local date `dateMs` (a UTC midnight naming the date) in `timeZone`. Usually its local
 * 00:00; on a day whose midnight a DST jump skips (America/Santiago in September), the instant of the jump.
 */
function dayStartMs(dateMs: number, timeZone: string): number {
  const first = dateMs - offsetMs(dateMs, timeZone);
  const second = dateMs - offsetMs(first, timeZone);
  const candidates = [first, second].filter((t) => localDateMs(t, timeZone) === dateMs).sort((a, b) => a - b);
  if (candidates.length === 0) return Math.min(first, second);
  let start = candidates[0]!;
  // Step back over a local midnight that exists twice (a fall-back at 00:00): the day starts at the first one.
  const earlier = start - (offsetMs(start - 3_600_000, timeZone) - offsetMs(start, timeZone));
  if (earlier < start && localDateMs(earlier, timeZone) === dateMs && wallMs(earlier, timeZone) === dateMs) start = earlier;
  return start;
}

/**
 * The calendar days of `timeZone` (an IANA name, validated by the caller) around nowMs: the day before, the day of
 * nowMs and the day after, as DayBounds. Days are 23, 24 or 25 hours long across DST changes.
 */
export function zonedDayBounds(nowMs: number, timeZone: string): DayBounds {
  if (timeZone === 'UTC' || timeZone === 'Etc/UTC') return utcDayBounds(nowMs);
  const today = localDateMs(nowMs, timeZone);
  return [
    dayStartMs(today - DAY_MS, timeZone),
    dayStartMs(today, timeZone),
    dayStartMs(today + DAY_MS, timeZone),
    dayStartMs(today + 2 * DAY_MS, timeZone),
  ];
}
