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
    latencyMsSum: Number(row.latency_ms_sum),
  };
}
