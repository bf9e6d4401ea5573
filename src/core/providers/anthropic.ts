// Anthropic rate-limit headers: anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
// {limit,remaining,reset}, resets as RFC 3339 instants. Any of them may be absent.
//
// LearnedLimits has one token budget, Anthropic reports up to three (combined, input, output) on different
// scales. The one kept is the most constraining: the smallest remaining fraction of its limit (or the
// smallest remaining count when a limit is missing), with that family's limit and reset, because it is the
// one that will refuse the next request first.
import type { HeaderBag, LearnedLimits } from '../types.js';
import { countHeader, headerValue } from './header-value.js';
import { EMPTY_LIMITS, limitsAreEmpty, resetAtFromInstantMs } from './limits.js';

const TOKEN_FAMILIES = ['tokens', 'input-tokens', 'output-tokens'] as const;
const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

interface Family {
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetAtMs: number | null;
}

export function parseAnthropicLimits(headers: HeaderBag, nowMs: number): LearnedLimits {
  const requests = readFamily(headers, 'requests', nowMs);
  const tokens = mostConstraining(TOKEN_FAMILIES.map((name) => readFamily(headers, name, nowMs)));
  const limits: LearnedLimits = {
    requestsLimit: requests.limit,
    requestsRemaining: requests.remaining,
    requestsResetAtMs: requests.resetAtMs,
    tokensLimit: tokens.limit,
    tokensRemaining: tokens.remaining,
    tokensResetAtMs: tokens.resetAtMs,
  };
  return limitsAreEmpty(limits) ? EMPTY_LIMITS : limits;
}

function readFamily(headers: HeaderBag, family: string, nowMs: number): Family {
  const prefix = `anthropic-ratelimit-${family}-`;
  return {
    limit: countHeader(headers, `${prefix}limit`),
    remaining: countHeader(headers, `${prefix}remaining`),
    resetAtMs: resetAtFromInstantMs(parseRfc3339Ms(headerValue(headers, `${prefix}reset`)), nowMs),
  };
}

function mostConstraining(families: readonly Family[]): Family {
  let chosen: Family | null = null;
  for (const family of families) {
    if (family.remaining === null) continue;
    if (chosen === null || tightness(family) < tightness(chosen)) chosen = family;
  }
  // No remaining count at all: keep whatever limit/reset was reported, combined budget first.
  return chosen ?? families.find((family) => family.limit !== null || family.resetAtMs !== null) ?? families[0] ?? {
    limit: null,
    remaining: null,
    resetAtMs: null,
  };
}

/** Remaining share of the limit (0 = exhausted); the raw count when the limit is unknown. */
function tightness(family: Family): number {
  const remaining = family.remaining ?? Infinity;
  return family.limit !== null && family.limit > 0 ? remaining / family.limit : remaining;
}

/** Strict RFC 3339 (what Anthropic sends); anything looser is ignored rather than guessed. */
export function parseRfc3339Ms(value: string | undefined): number | null {
  if (value === undefined) return null;
  const match = RFC3339.exec(value);
  if (match === null) return null;
  // Date.parse keeps milliseconds only; trim the fraction so nanosecond precision parses everywhere.
  const fraction = (match[3] ?? '').slice(0, 4);
  const parsed = Date.parse(`${match[1]}T${match[2]}${fraction}${(match[4] ?? '').toUpperCase()}`);
  return Number.isNaN(parsed) ? null : parsed;
}
