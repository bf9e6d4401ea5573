import type { UsageBucket } from '../catalog/usage/rows.js';
// The counters of one account's minute bucket, added together wherever buckets meet (the in-memory aggregation of
// the write buffer, a batch merged before its upsert).

/** The additive part of a UsageBucket. */
export type UsageCounts = Omit<UsageBucket, 'accountId' | 'bucketStart'>;

export type MutableUsageCounts = { -readonly [K in keyof UsageCounts]: UsageCounts[K] };

export function addUsageCounts(into: MutableUsageCounts, from: UsageCounts): void {
  into.requests += from.requests;
  into.successes += from.successes;
  into.rateLimited += from.rateLimited;
  into.clientErrors += from.clientErrors;
  into.serverErrors += from.serverErrors;
  into.inputTokens += from.inputTokens;
  into.outputTokens += from.outputTokens;
  into.cachedInputTokens += from.cachedInputTokens;
  into.cacheCreationInputTokens += from.cacheCreationInputTokens;
  into.latencyMsSum += from.latencyMsSum;
}
