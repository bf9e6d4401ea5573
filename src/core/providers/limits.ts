// Shared rules for turning provider rate-limit headers into LearnedLimits.
import type { LearnedLimits } from '../types.js';

/** Nothing reported. */
export const EMPTY_LIMITS: LearnedLimits = Object.freeze({
  requestsLimit: null,
  requestsRemaining: null,
  requestsResetAtMs: null,
  tokensLimit: null,
  tokensRemaining: null,
  tokensResetAtMs: null,
});

/**
 * Furthest ahead a reported reset is believed. Daily windows (Groq's request counts) reset within a day;
 * a reset further out is garbage (an epoch sent where a duration belongs, a broken clock) and is ignored
 * rather than parking an account for weeks.
 */
export const MAX_RESET_AHEAD_MS = 24 * 60 * 60 * 1_000;

/**
 * Absolute reset instant from a delay: rounded up to a whole millisecond (never release an account early),
 * null when the delay is negative, not finite or beyond MAX_RESET_AHEAD_MS.
 */
export function resetAtFromDelayMs(delayMs: number | null, nowMs: number): number | null {
  if (delayMs === null || !Number.isFinite(delayMs) || delayMs < 0 || delayMs > MAX_RESET_AHEAD_MS) return null;
  // Round to whole microseconds first: decimal fractions in binary (`4.35s` * 1000 = 4349.999...) must not
  // move the result by a millisecond either way.
  return nowMs + Math.ceil(Math.round(delayMs * 1_000) / 1_000);
}

/** Absolute reset instant as reported: a past instant means "already reset" (nowMs); too far ahead -> null. */
export function resetAtFromInstantMs(instantMs: number | null, nowMs: number): number | null {
  if (instantMs === null || !Number.isFinite(instantMs)) return null;
  if (instantMs - nowMs > MAX_RESET_AHEAD_MS) return null;
  return Math.max(nowMs, Math.ceil(instantMs));
}

export function limitsAreEmpty(limits: LearnedLimits): boolean {
  return (
    limits.requestsLimit === null &&
    limits.requestsRemaining === null &&
    limits.requestsResetAtMs === null &&
    limits.tokensLimit === null &&
    limits.tokensRemaining === null &&
    limits.tokensResetAtMs === null
  );
}
