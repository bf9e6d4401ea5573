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

-- token_prices: what tokens cost, per provider and model, in USD per million tokens (src/core/usage-cost.ts). model is
-- the name the provider reports (`gpt-4o-2024-08-06`), a prefix ending in `*` (`gpt-4o*`; the longest wins) or `*`
-- for every model of the provider. Cached and cache-creation prices default to the input price when NULL. A price
-- applies to usage recorded after the snapshot holding it is loaded; cost_usd of earlier buckets stays as recorded.
-- No foreign key to providers: a price may be set before its provider exists. Changes are audited as config_set.
CREATE TABLE IF NOT EXISTS token_prices (
  provider_slug               TEXT NOT NULL CONSTRAINT token_prices_provider_check CHECK (provider_slug ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'),
  model                       TEXT NOT NULL CONSTRAINT token_prices_model_check CHECK (model ~ '^[\x21\x23-\x7e]{1,200}$'),
  input_usd_per_mtok          NUMERIC(14, 6) NOT NULL CHECK (input_usd_per_mtok >= 0 AND input_usd_per_mtok <= 100000),
  output_usd_per_mtok         NUMERIC(14, 6) NOT NULL CHECK (output_usd_per_mtok >= 0 AND output_usd_per_mtok <= 100000),
  cached_input_usd_per_mtok   NUMERIC(14, 6) CHECK (cached_input_usd_per_mtok >= 0 AND cached_input_usd_per_mtok <= 100000),
  cache_creation_usd_per_mtok NUMERIC(14, 6) CHECK (cache_creation_usd_per_mtok >= 0 AND cache_creation_usd_per_mtok <= 100000),
  created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_by                  TEXT,
  PRIMARY KEY (provider_slug, model)
);

DROP TRIGGER IF EXISTS token_prices_touch ON token_prices;
CREATE TRIGGER token_prices_touch BEFORE UPDATE ON token_prices
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS token_prices_changed ON token_prices;
CREATE TRIGGER token_prices_changed AFTER INSERT OR UPDATE OR DELETE ON token_prices
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
