// Retry hints on a response: `retry-after-ms` (Azure, OpenAI) and `retry-after` (RFC 9110: delay-seconds or
// an HTTP-date). Returns the delay in milliseconds from nowMs, or null when there is no usable hint.
//
// Rules: `retry-after-ms` wins when both are valid (finer). `retry-after` is tested against /^\d+$/ BEFORE
// any date parsing, because V8's Date.parse reads "120" as the year 120. HTTP-dates are accepted in the
// IMF-fixdate and RFC 850 forms (both carry "GMT"); asctime dates are ignored (Date.parse would read them
// in the server's local zone). A date in the past means "retry now" (0). Delays beyond
// MAX_RETRY_AFTER_MS are clamped to it: a provider asking for days is exhausted for at least a day, and a
// day later the next response tells again. Garbage (negative, fractions of seconds, text) -> null.
import type { HeaderBag } from '../types.js';
import { headerValue } from './header-value.js';

export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1_000;

const WHOLE_SECONDS = /^\d+$/;
const MILLISECONDS = /^\d{1,15}(?:\.\d+)?$/;
const IMF_FIXDATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC850_DATE = /^[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;

export function parseRetryAfterMs(headers: HeaderBag, nowMs: number): number | null {
  const milliseconds = headerValue(headers, 'retry-after-ms');
  if (milliseconds !== undefined && MILLISECONDS.test(milliseconds)) return clampDelayMs(Math.ceil(Number(milliseconds)));
  const value = headerValue(headers, 'retry-after');
  if (value === undefined) return null;
  if (WHOLE_SECONDS.test(value)) return clampDelayMs(Number(value) * 1_000);
  if (!IMF_FIXDATE.test(value) && !RFC850_DATE.test(value)) return null;
  const dateMs = Date.parse(value);
  if (Number.isNaN(dateMs)) return null;
  return clampDelayMs(Math.max(0, dateMs - nowMs));
}

function clampDelayMs(delayMs: number): number | null {
  if (!Number.isFinite(delayMs)) return delayMs === Infinity ? MAX_RETRY_AFTER_MS : null;
  return Math.min(Math.max(0, delayMs), MAX_RETRY_AFTER_MS);
}
