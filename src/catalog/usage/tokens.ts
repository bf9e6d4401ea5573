// Tokens per client key and tenant per provider per minute (token_usage_stats, migration 0010): its SQL. Additive
// upserts, safe for any number of replicas flushing the same bucket, like account_usage_stats (./dao.ts).
import type { SqlClient } from '../../stores/sql-client.js';
import { isTenantId, isUuid } from '../rules.js';
import { MAX_BATCH_ROWS } from '../sql.js';
import { addTokenCounts, emptyTokenCounts, type MutableTokenCounts, type TokenCounts, type TokenUsageBucket } from './rows.js';

const COLUMNS = 11;
const MINUTE_MS = 60_000;

export interface TokenUsageQuery {
  /** Exactly one of tenantId and keyId. */
  readonly tenantId?: string | undefined;
  readonly keyId?: string | undefined;
  /** Inclusive. */
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
}

export class TokenUsageDao {
  constructor(private readonly sql: SqlClient) {}

  /** Additive upsert per (key, tenant, provider, minute); buckets are truncated to the minute and merged first. */
  async add(buckets: readonly TokenUsageBucket[]): Promise<void> {
    const merged = mergeTokenBuckets(buckets);
    for (let start = 0; start < merged.length; start += MAX_BATCH_ROWS) {
      const chunk = merged.slice(start, start + MAX_BATCH_ROWS);
      const params: unknown[] = [];
      const values = chunk.map((b) => {
        params.push(
          b.keyId,
          b.tenantId,
          b.provider,
          b.bucketStart,
          b.requests,
          b.estimatedRequests,
          b.inputTokens,
          b.outputTokens,
          b.cachedInputTokens,
          b.cacheCreationInputTokens,
          b.costUsd.toFixed(9),
        );
        const n = params.length - COLUMNS;
        return `($${n + 1}::uuid, $${n + 2}::text, $${n + 3}::text, $${n + 4}::timestamptz, $${n + 5}::bigint, $${n + 6}::bigint,
                 $${n + 7}::bigint, $${n + 8}::bigint, $${n + 9}::bigint, $${n + 10}::bigint, $${n + 11}::numeric)`;
      });
      await this.sql.query(
        `INSERT INTO token_usage_stats AS s (key_id, tenant_id, provider, bucket_start, requests, estimated_requests, input_tokens,
            output_tokens, cached_input_tokens, cache_creation_input_tokens, cost_usd)
         VALUES ${values.join(', ')}
         ON CONFLICT (key_id, tenant_id, provider, bucket_start) DO UPDATE SET
           requests = s.requests + EXCLUDED.requests,
           estimated_requests = s.estimated_requests + EXCLUDED.estimated_requests,
           input_tokens = s.input_tokens + EXCLUDED.input_tokens,
           output_tokens = s.output_tokens + EXCLUDED.output_tokens,
           cached_input_tokens = s.cached_input_tokens + EXCLUDED.cached_input_tokens,
           cache_creation_input_tokens = s.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,
           cost_usd = s.cost_usd + EXCLUDED.cost_usd`,
        params,
      );
    }
  }

  /** Totals of one tenant's (or one key's) buckets in [from, to), across providers; zeros when nothing was recorded. */
  async totals(query: TokenUsageQuery): Promise<TokenCounts> {
    let filter: string;
    let subject: string;
    if (query.tenantId !== undefined) {
      if (!isTenantId(query.tenantId)) return emptyTokenCounts();
      filter = 'tenant_id = $3';
      subject = query.tenantId;
    } else if (query.keyId !== undefined) {
      if (!isUuid(query.keyId)) return emptyTokenCounts();
      filter = 'key_id = $3';
      subject = query.keyId;
    } else {
      throw new Error('token usage totals need a tenant or a key');
    }
    const rows = await this.sql.query<Record<string, string | number | null>>(
      `SELECT sum(requests) AS requests, sum(estimated_requests) AS estimated_requests, sum(input_tokens) AS input_tokens,
              sum(output_tokens) AS output_tokens, sum(cached_input_tokens) AS cached_input_tokens,
              sum(cache_creation_input_tokens) AS cache_creation_input_tokens, sum(cost_usd) AS cost_usd
       FROM token_usage_stats WHERE bucket_start >= $1 AND bucket_start < $2 AND ${filter}`,
      [query.from, query.to, subject],
    );
    const row = rows[0] ?? {};
    const n = (value: string | number | null | undefined) => Number(value ?? 0);
    return {
      requests: n(row.requests),
      estimatedRequests: n(row.estimated_requests),
      inputTokens: n(row.input_tokens),
      outputTokens: n(row.output_tokens),
      cachedInputTokens: n(row.cached_input_tokens),
      cacheCreationInputTokens: n(row.cache_creation_input_tokens),
      costUsd: n(row.cost_usd),
    };
  }

  /** Deletes the minute buckets that start before `before` (counters, not audit). */
  async prune(before: Date): Promise<number> {
    const rows = await this.sql.query<{ n: string | number }>(
      'WITH gone AS (DELETE FROM token_usage_stats WHERE bucket_start < $1 RETURNING 1) SELECT count(*) AS n FROM gone',
      [before],
    );
    return Number(rows[0]?.n ?? 0);
  }
}

type MergedTokenBucket = TokenUsageBucket & MutableTokenCounts;

/** Merged per (key, tenant, provider, minute); rows whose key or tenant is not well-formed are dropped. */
function mergeTokenBuckets(buckets: readonly TokenUsageBucket[]): MergedTokenBucket[] {
  const merged = new Map<string, MergedTokenBucket>();
  for (const bucket of buckets) {
    if (!isUuid(bucket.keyId) || (bucket.tenantId !== '' && !isTenantId(bucket.tenantId))) continue;
    const startMs = Math.floor(bucket.bucketStart.getTime() / MINUTE_MS) * MINUTE_MS;
    const keyId = bucket.keyId.toLowerCase();
    const id = `${keyId}|${bucket.tenantId}|${bucket.provider}|${startMs}`;
    const into = merged.get(id);
    if (into === undefined) merged.set(id, { ...bucket, keyId, bucketStart: new Date(startMs) });
    else addTokenCounts(into, bucket);
  }
  return [...merged.values()];
}
