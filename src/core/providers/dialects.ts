// Which header parser a provider's rate-limit dialect uses.
import type { HeaderBag, LearnedLimits, RateLimitDialect } from '../types.js';
import { parseAnthropicLimits } from './anthropic.js';
import { EMPTY_LIMITS } from './limits.js';
import { parseOpenAiLimits } from './openai.js';

/**
 * Limits reported by a response in the provider's dialect. Azure sends the OpenAI headers (its
 * retry-after-ms is a retry hint, see parseRetryAfterMs). Gemini reports no limits in headers.
 */
export function learnedLimitsFor(dialect: RateLimitDialect, headers: HeaderBag, nowMs: number): LearnedLimits {
  switch (dialect) {
    case 'openai':
    case 'azure':
      return parseOpenAiLimits(headers, nowMs);
    case 'anthropic':
      return parseAnthropicLimits(headers, nowMs);
    default:
      return EMPTY_LIMITS;
  }
}
