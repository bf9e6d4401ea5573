// Per-account usage per minute bucket, as flushed by the request path and read back by operators.

/** Usage of one account in one minute bucket; flushed with an additive upsert. */
export interface UsageBucket {
  readonly accountId: string;
  readonly bucketStart: Date;
  readonly requests: number;
  readonly successes: number;
  readonly rateLimited: number;
  readonly clientErrors: number;
  readonly serverErrors: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Part of inputTokens read from the provider's prompt cache (migration 0010). */
  readonly cachedInputTokens: number;
  /** Part of inputTokens written to the provider's prompt cache (Anthropic). */
  readonly cacheCreationInputTokens: number;
  readonly latencyMsSum: number;
}

export interface DbUsage {
  account_id: string;
  bucket_start: Date;
  requests: number;
  successes: number;
  rate_limited: number;
  client_errors: number;
  server_errors: number;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  cache_creation_input_tokens: number;
  latency_ms_sum: number;
}

export function toUsage(row: DbUsage): UsageBucket {
  return {
    accountId: row.account_id,
    bucketStart: row.bucket_start,
    requests: Number(row.requests),
    successes: Number(row.successes),
    rateLimited: Number(row.rate_limited),
    clientErrors: Number(row.client_errors),
    serverErrors: Number(row.server_errors),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    cachedInputTokens: Number(row.cached_input_tokens),
    cacheCreationInputTokens: Number(row.cache_creation_input_tokens),
    latencyMsSum: Number(row.latency_ms_sum),
  };
}

/**
 * Tokens of one client key (counted under one tenant, '' for none) on one provider in one minute bucket
 * (token_usage_stats, migration 0010); flushed with an additive upsert.
 */
export interface TokenUsageBucket {
  readonly keyId: string;
  readonly tenantId: string;
  readonly provider: string;
  readonly bucketStart: Date;
  /** Responses whose usage was recorded. */
  readonly requests: number;
  /** Of those, the ones whose figures were estimated from streamed text. */
  readonly estimatedRequests: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedInputTokens: number;
  readonly cacheCreationInputTokens: number;
  /** From the `usage.prices` setting when recorded; 0 without a price. */
  readonly costUsd: number;
}

/** The additive part of a TokenUsageBucket. */
export type TokenCounts = Omit<TokenUsageBucket, 'keyId' | 'tenantId' | 'provider' | 'bucketStart'>;

export type MutableTokenCounts = { -readonly [K in keyof TokenCounts]: TokenCounts[K] };

export const TOKEN_COUNT_FIELDS = [
  'requests',
  'estimatedRequests',
  'inputTokens',
  'outputTokens',
  'cachedInputTokens',
  'cacheCreationInputTokens',
  'costUsd',
] as const satisfies ReadonlyArray<keyof TokenCounts>;

export function emptyTokenCounts(): MutableTokenCounts {
  return { requests: 0, estimatedRequests: 0, inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, cacheCreationInputTokens: 0, costUsd: 0 };
}

export function addTokenCounts(into: MutableTokenCounts, from: TokenCounts): void {
  for (const field of TOKEN_COUNT_FIELDS) into[field] += from[field];
}
