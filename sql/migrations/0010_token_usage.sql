-- keypool schema, version 10: token usage read from response bodies (src/core/usage.ts).
--
-- account_usage_stats already had input_tokens and output_tokens (always 0 until now); they are filled from the
-- provider's reported usage, and the cached part of the input gets its own two columns. Meaning of each column, the
-- same in both tables: input_tokens counts every prompt token (cached reads and cache writes included, whatever the
-- provider's own convention), cached_input_tokens the part read from the prompt cache, cache_creation_input_tokens
-- the part written to it (Anthropic), output_tokens the generated tokens (reasoning included).
ALTER TABLE account_usage_stats ADD COLUMN IF NOT EXISTS cached_input_tokens BIGINT NOT NULL DEFAULT 0
  CONSTRAINT account_usage_stats_cached_input_tokens_check CHECK (cached_input_tokens >= 0);
ALTER TABLE account_usage_stats ADD COLUMN IF NOT EXISTS cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0
  CONSTRAINT account_usage_stats_cache_creation_input_tokens_check CHECK (cache_creation_input_tokens >= 0);

-- token_usage_stats: tokens per client key (and the tenant it was counted under) per provider per minute, flushed
-- with an additive upsert by every replica like account_usage_stats. Per-tenant figures are sums over the tenant's
-- rows, per-key ones over the key's. tenant_id is '' for a request without tenant (a NULL would defeat the unique
-- constraint's conflict target). No foreign key to system_api_keys: a key deleted meanwhile still has its usage
-- counted (keys are soft-deleted anyway), and the write path never fails on it.
--   requests            responses whose usage was recorded (one per response that carried or estimated usage)
--   estimated_requests  of those, the ones whose figures were estimated from streamed text (no usage reported)
--   cost_usd            from the `usage.prices` setting at the time of recording; 0 when no price was set
-- Counters only: updated in place, never soft-deleted; pruned with account_usage_stats (KEYPOOL_RETENTION_DAYS,
-- `keypool audit prune`).
CREATE TABLE IF NOT EXISTS token_usage_stats (
  id                          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  key_id                      UUID NOT NULL,
  tenant_id                   TEXT NOT NULL DEFAULT '' CONSTRAINT token_usage_stats_tenant_id_check CHECK (tenant_id = '' OR tenant_id ~ '^[A-Za-z0-9._-]{1,64}$'),
  provider                    TEXT NOT NULL CONSTRAINT token_usage_stats_provider_check CHECK (length(provider) BETWEEN 1 AND 64),
  bucket_start                TIMESTAMPTZ NOT NULL,
  requests                    BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
  estimated_requests          BIGINT NOT NULL DEFAULT 0 CHECK (estimated_requests >= 0),
  input_tokens                BIGINT NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens               BIGINT NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  cached_input_tokens         BIGINT NOT NULL DEFAULT 0 CHECK (cached_input_tokens >= 0),
  cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0 CHECK (cache_creation_input_tokens >= 0),
  cost_usd                    NUMERIC(20, 9) NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
  created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT token_usage_stats_bucket_uq UNIQUE (key_id, tenant_id, provider, bucket_start)
);
CREATE INDEX IF NOT EXISTS token_usage_stats_bucket_ix ON token_usage_stats (bucket_start);
CREATE INDEX IF NOT EXISTS token_usage_stats_tenant_ix ON token_usage_stats (tenant_id, bucket_start);

DROP TRIGGER IF EXISTS token_usage_stats_touch ON token_usage_stats;
CREATE TRIGGER token_usage_stats_touch BEFORE UPDATE ON token_usage_stats
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
