// Per-account usage per minute: its SQL (additive upserts, safe for any number of replicas).
import { addUsageCounts, type MutableUsageCounts } from '../../stores/usage-counts.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { isUuid } from '../rules.js';
import { MAX_BATCH_ROWS } from '../sql.js';
import { toUsage, type DbUsage, type UsageBucket } from './rows.js';

export interface UsageQuery {
  readonly accountId?: string | undefined;
  /** Inclusive. */
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
}

export class UsageDao {
  constructor(private readonly sql: SqlClient) {}

  /**
   * Additive upsert per (account, minute): safe for any number of replicas flushing the same bucket. Buckets are
   * truncated to the minute and merged before writing; buckets of unknown accounts are dropped.
   */
  async add(buckets: readonly UsageBucket[]): Promise<void> {
    const merged = mergeBuckets(buckets);
    for (let start = 0; start < merged.length; start += MAX_BATCH_ROWS) {
      const chunk = merged.slice(start, start + MAX_BATCH_ROWS);
      const params: unknown[] = [];
      const values = chunk.map((bucket) => {
        params.push(
          bucket.accountId,
          bucket.bucketStart,
          bucket.requests,
          bucket.successes,
          bucket.rateLimited,
          bucket.clientErrors,
          bucket.serverErrors,
          bucket.inputTokens,
          bucket.outputTokens,
          bucket.cachedInputTokens,
          bucket.cacheCreationInputTokens,
          bucket.latencyMsSum,
        );
        const n = params.length - 12;
        return `($${n + 1}::uuid, $${n + 2}::timestamptz, $${n + 3}::bigint, $${n + 4}::bigint, $${n + 5}::bigint, $${n + 6}::bigint,
                 $${n + 7}::bigint, $${n + 8}::bigint, $${n + 9}::bigint, $${n + 10}::bigint, $${n + 11}::bigint, $${n + 12}::bigint)`;
      });
      await this.sql.query(
        `INSERT INTO account_usage_stats AS s (account_id, bucket_start, requests, successes, rate_limited, client_errors,
            server_errors, input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens, latency_ms_sum)
         SELECT v.* FROM (VALUES ${values.join(', ')}) AS v (account_id, bucket_start, requests, successes, rate_limited,
            client_errors, server_errors, input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens, latency_ms_sum)
         JOIN provider_accounts a ON a.id = v.account_id
         ON CONFLICT (account_id, bucket_start) DO UPDATE SET
           requests = s.requests + EXCLUDED.requests,
           successes = s.successes + EXCLUDED.successes,
           rate_limited = s.rate_limited + EXCLUDED.rate_limited,
           client_errors = s.client_errors + EXCLUDED.client_errors,
           server_errors = s.server_errors + EXCLUDED.server_errors,
           input_tokens = s.input_tokens + EXCLUDED.input_tokens,
           output_tokens = s.output_tokens + EXCLUDED.output_tokens,
           cached_input_tokens = s.cached_input_tokens + EXCLUDED.cached_input_tokens,
           cache_creation_input_tokens = s.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,
           latency_ms_sum = s.latency_ms_sum + EXCLUDED.latency_ms_sum`,
        params,
      );
    }
  }

  /** Usage buckets in [from, to), oldest first. */
  async query(query: UsageQuery): Promise<UsageBucket[]> {
    const params: unknown[] = [query.from, query.to];
    let accountFilter = '';
    if (query.accountId !== undefined) {
      if (!isUuid(query.accountId)) return [];
      params.push(query.accountId);
      accountFilter = `AND account_id = $3`;
    }
    const rows = await this.sql.query<DbUsage>(
      `SELECT account_id, bucket_start, requests, successes, rate_limited, client_errors, server_errors, input_tokens,
              output_tokens, cached_input_tokens, cache_creation_input_tokens, latency_ms_sum
       FROM account_usage_stats WHERE bucket_start >= $1 AND bucket_start < $2 ${accountFilter}
       ORDER BY bucket_start, account_id`,
      params,
    );
    return rows.map(toUsage);
  }

  /**
   * Usage summed per step in the database (a week of one provider's minutes is one small answer, not 10,080 rows per
   * account), oldest first; steps without usage are absent (the caller fills gaps).
   */
  async series(query: UsageSeriesQuery): Promise<UsagePoint[]> {
    const params: unknown[] = [query.from, query.to, query.stepSeconds];
    const filters: string[] = [];
    if (query.accountId !== undefined) {
      if (!isUuid(query.accountId)) return [];
      params.push(query.accountId);
      filters.push(`s.account_id = $${params.length}`);
    }
    if (query.providerSlug !== undefined) {
      params.push(query.providerSlug);
      filters.push(`s.account_id IN (SELECT a.id FROM provider_accounts a JOIN providers p ON p.id = a.provider_id WHERE p.slug = $${params.length})`);
    }
    const rows = await this.sql.query<Omit<DbUsage, 'account_id'>>(
      `SELECT to_timestamp(floor(extract(epoch FROM s.bucket_start) / $3::int) * $3::int) AS bucket_start,
              sum(s.requests) AS requests, sum(s.successes) AS successes, sum(s.rate_limited) AS rate_limited,
              sum(s.client_errors) AS client_errors, sum(s.server_errors) AS server_errors,
              sum(s.input_tokens) AS input_tokens, sum(s.output_tokens) AS output_tokens,
              sum(s.cached_input_tokens) AS cached_input_tokens, sum(s.cache_creation_input_tokens) AS cache_creation_input_tokens,
              sum(s.latency_ms_sum) AS latency_ms_sum
       FROM account_usage_stats s
       WHERE s.bucket_start >= $1 AND s.bucket_start < $2 ${filters.map((f) => `AND ${f}`).join(' ')}
       GROUP BY 1 ORDER BY 1`,
      params,
    );
    return rows.map((row) => {
      const { accountId: _unused, ...point } = toUsage({ ...row, account_id: '' });
      return point;
    });
  }

  /** Deletes the minute buckets that start before `before` (usage counters are not audit: no trigger guards them). */
  async prune(before: Date): Promise<number> {
    const rows = await this.sql.query<{ n: string | number }>(
      'WITH gone AS (DELETE FROM account_usage_stats WHERE bucket_start < $1 RETURNING 1) SELECT count(*) AS n FROM gone',
      [before],
    );
    return Number(rows[0]?.n ?? 0);
  }
}

export interface UsageSeriesQuery {
  /** One account, or every account of `providerSlug` when undefined. */
  readonly accountId?: string | undefined;
  readonly providerSlug?: string | undefined;
  /** Inclusive; aligned down to `stepSeconds`. */
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
  /** Width of one point, in seconds (a multiple of 60: buckets are minutes). */
  readonly stepSeconds: number;
}

/** One point of a usage series: the minute buckets in [bucketStart, bucketStart + step), summed. */
export type UsagePoint = Omit<UsageBucket, 'accountId'>;

type MergedBucket = UsageBucket & MutableUsageCounts;

function mergeBuckets(buckets: readonly UsageBucket[]): MergedBucket[] {
  const merged = new Map<string, MergedBucket>();
  for (const bucket of buckets) {
    if (!isUuid(bucket.accountId)) continue;
    const startMs = Math.floor(bucket.bucketStart.getTime() / 60_000) * 60_000;
    const id = `${bucket.accountId.toLowerCase()}|${startMs}`;
    const into = merged.get(id);
    if (!into) {
      merged.set(id, { ...bucket, accountId: bucket.accountId.toLowerCase(), bucketStart: new Date(startMs) });
      continue;
    }
    addUsageCounts(into, bucket);
  }
  return [...merged.values()];
}
