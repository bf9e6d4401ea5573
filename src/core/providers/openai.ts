// OpenAI-style rate-limit headers, also sent by Groq, Azure OpenAI, OpenRouter (on its own 429s) and most
// OpenAI-compatible servers:
//   x-ratelimit-limit-requests / -remaining-requests / -reset-requests
//   x-ratelimit-limit-tokens   / -remaining-tokens   / -reset-tokens
// Resets are Go durations until the window resets (`1s`, `6m0s`, `12ms`, `2m59.56s`). Some compatible
// servers send plain seconds (`20`, `0.5`); those are accepted too. Azure's extra `retry-after-ms` is a
// retry hint, read by parseRetryAfterMs, not a window.
import { parseGoDurationMs } from '../duration.js';
import type { HeaderBag, LearnedLimits } from '../types.js';
import { countHeader, headerValue } from './header-value.js';
import { EMPTY_LIMITS, limitsAreEmpty, resetAtFromDelayMs } from './limits.js';

const PLAIN_SECONDS = /^\d{1,9}(?:\.\d+)?$/;

export function parseOpenAiLimits(headers: HeaderBag, nowMs: number): LearnedLimits {
  const limits: LearnedLimits = {
    requestsLimit: countHeader(headers, 'x-ratelimit-limit-requests'),
    requestsRemaining: countHeader(headers, 'x-ratelimit-remaining-requests'),
    requestsResetAtMs: resetAtFromDelayMs(resetDelayMs(headerValue(headers, 'x-ratelimit-reset-requests')), nowMs),
    tokensLimit: countHeader(headers, 'x-ratelimit-limit-tokens'),
    tokensRemaining: countHeader(headers, 'x-ratelimit-remaining-tokens'),
    tokensResetAtMs: resetAtFromDelayMs(resetDelayMs(headerValue(headers, 'x-ratelimit-reset-tokens')), nowMs),
  };
  // Most responses from non-OpenAI dialects carry none of these: share one object instead of allocating.
  return limitsAreEmpty(limits) ? EMPTY_LIMITS : limits;
}

function resetDelayMs(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (PLAIN_SECONDS.test(value)) return Number(value) * 1_000;
  return parseGoDurationMs(value);
}
