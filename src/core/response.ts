// What one upstream response says about the account that served it. The rate-state store folds the
// Observation into cooldowns, health and learned capacity; this file only classifies and reads headers.
//
// Status classes:
//   2xx                      success
//   429                      rate_limited, cooldown until the retry hint, else until the windows that
//                            report 0 remaining reset, else nowMs + defaultCooldownMs
//   402                      quota_exhausted (Payment Required: OpenRouter and others say "no credit left")
//   401, 403                 invalid_credential (bad, revoked or blocked upstream key)
//   other 4xx, 1xx, 3xx      client_error: the request's fault or not about the account (neutral for health)
//   5xx, 0, < 100, > 599     server_error (0 / out of range = no response: timeout, reset, gateway error)
//
// Known blind spots, because gateways do not send response bodies to keypool: OpenAI reports exhausted
// credit as a 429 with `insufficient_quota` in the body, and Gemini reports an invalid key as a 400 with
// reason API_KEY_INVALID in the body. No header distinguishes them, so they are seen as rate_limited and
// client_error. quota_exhausted is produced for 402 only until body inspection exists.
import { learnedLimitsFor } from './providers/dialects.js';
import { MAX_RESET_AHEAD_MS } from './providers/limits.js';
import { parseRetryAfterMs } from './providers/retry-after.js';
import type { HeaderBag, LearnedLimits, Observation, ObservationOutcome, RateLimitDialect } from './types.js';

export const DEFAULT_COOLDOWN_MS = 30_000;
/**
 * Longest a learned request-window reset may lie ahead: the longest request window providers use is a day (Groq
 * counts requests per day). The dialect parsers already ignore a reset beyond it (providers/limits.ts); kept here as
 * the cap's one name next to the token cap.
 */
export const MAX_REQUESTS_RESET_MS = MAX_RESET_AHEAD_MS;
/** Longest a learned token-window reset may lie ahead: token windows are per minute everywhere; an hour is generous. */
export const MAX_TOKENS_RESET_MS = 3_600_000;

export function observeResponse(
  dialect: RateLimitDialect,
  status: number,
  headers: HeaderBag,
  nowMs: number,
  defaultCooldownMs = DEFAULT_COOLDOWN_MS,
): Observation {
  const reported = learnedLimitsFor(dialect, headers, nowMs);
  const learned = cappedResets(reported, nowMs);
  const outcome = classifyStatus(status);
  const cooldownUntilMs = outcome === 'rate_limited' ? rateLimitCooldownUntilMs(headers, learned, nowMs, defaultCooldownMs) : null;
  const observation: Observation = { outcome, status: Number.isInteger(status) ? status : 0, cooldownUntilMs, learned };
  if (learned === reported) return observation;
  const furthest = Math.max(reported.requestsResetAtMs ?? 0, reported.tokensResetAtMs ?? 0);
  return { ...observation, cappedResetAtMs: furthest };
}

/** The reported limits with each reset instant cut to its cap; the same object when nothing was cut. */
function cappedResets(learned: LearnedLimits, nowMs: number): LearnedLimits {
  const requestsMax = nowMs + MAX_REQUESTS_RESET_MS;
  const tokensMax = nowMs + MAX_TOKENS_RESET_MS;
  const requestsOver = learned.requestsResetAtMs !== null && learned.requestsResetAtMs > requestsMax;
  const tokensOver = learned.tokensResetAtMs !== null && learned.tokensResetAtMs > tokensMax;
  if (!requestsOver && !tokensOver) return learned;
  return {
    ...learned,
    requestsResetAtMs: requestsOver ? requestsMax : learned.requestsResetAtMs,
    tokensResetAtMs: tokensOver ? tokensMax : learned.tokensResetAtMs,
  };
}

/**
 * True when the observation changes who may be admitted next: a cooldown, an invalidation or exhausted credit, a
 * server error (it may open the circuit), or a provider window reported empty. Such an observation must reach the
 * shared state before the response is answered, or another replica admits the account in the gap. A plain success
 * or a client error changes nothing another replica's next decision depends on.
 */
export function changesAdmission(observation: Observation): boolean {
  switch (observation.outcome) {
    case 'rate_limited':
    case 'invalid_credential':
    case 'quota_exhausted':
    case 'server_error':
      return true;
    case 'success':
    case 'client_error':
      return observation.learned.requestsRemaining === 0 || observation.learned.tokensRemaining === 0;
  }
}

export function classifyStatus(status: number): ObservationOutcome {
  if (!Number.isInteger(status) || status < 100 || status > 599) return 'server_error';
  if (status >= 200 && status < 300) return 'success';
  if (status === 429) return 'rate_limited';
  if (status === 402) return 'quota_exhausted';
  if (status === 401 || status === 403) return 'invalid_credential';
  if (status >= 500) return 'server_error';
  return 'client_error';
}

/**
 * The explicit retry hint wins. Otherwise the account is blocked until every exhausted window (remaining 0)
 * has reset: when both requests and tokens are at 0, the later reset (waking at the earlier one would only
 * earn another 429).
 */
function rateLimitCooldownUntilMs(
  headers: HeaderBag,
  learned: LearnedLimits,
  nowMs: number,
  defaultCooldownMs: number,
): number {
  const retryAfterMs = parseRetryAfterMs(headers, nowMs);
  if (retryAfterMs !== null) return nowMs + retryAfterMs;
  let untilMs: number | null = null;
  if (learned.requestsRemaining === 0 && learned.requestsResetAtMs !== null) untilMs = learned.requestsResetAtMs;
  if (learned.tokensRemaining === 0 && learned.tokensResetAtMs !== null) {
    untilMs = Math.max(untilMs ?? learned.tokensResetAtMs, learned.tokensResetAtMs);
  }
  const fallbackMs = Number.isFinite(defaultCooldownMs) && defaultCooldownMs >= 0 ? defaultCooldownMs : DEFAULT_COOLDOWN_MS;
  return untilMs ?? nowMs + fallbackMs;
}
