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
import { parseRetryAfterMs } from './providers/retry-after.js';
import type { HeaderBag, LearnedLimits, Observation, ObservationOutcome, RateLimitDialect } from './types.js';

export const DEFAULT_COOLDOWN_MS = 30_000;

export function observeResponse(
  dialect: RateLimitDialect,
  status: number,
  headers: HeaderBag,
  nowMs: number,
  defaultCooldownMs = DEFAULT_COOLDOWN_MS,
): Observation {
  const learned = learnedLimitsFor(dialect, headers, nowMs);
  const outcome = classifyStatus(status);
  const cooldownUntilMs = outcome === 'rate_limited' ? rateLimitCooldownUntilMs(headers, learned, nowMs, defaultCooldownMs) : null;
  return { outcome, status: Number.isInteger(status) ? status : 0, cooldownUntilMs, learned };
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
