-- keypool schema, version 11: token quotas for client keys and tenants, and the tokens.default_output setting.
--
-- tpm_limit: tokens per minute (sliding 60 s), INTEGER like every per-minute limit (src/catalog/rules.ts limitMax).
-- tpd_limit: tokens per calendar day of KEYPOOL_QUOTA_TZ. BIGINT: a tenant's day can exceed 2^31 tokens; bounded by
-- 2^53 - 1 (rules.ts tokenDayLimitMax) so the value stays exact as a JavaScript number and a Lua number in Redis.
-- NULL = unlimited. Tokens are reserved at admission (estimate) and reconciled with the provider's usage (README,
-- "Exact TPM: reserve and reconcile").
ALTER TABLE system_api_keys ADD COLUMN IF NOT EXISTS tpm_limit INTEGER CONSTRAINT system_api_keys_tpm_limit_check CHECK (tpm_limit > 0);
ALTER TABLE system_api_keys ADD COLUMN IF NOT EXISTS tpd_limit BIGINT
  CONSTRAINT system_api_keys_tpd_limit_check CHECK (tpd_limit > 0 AND tpd_limit <= 9007199254740991);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS tpm_limit INTEGER CONSTRAINT tenants_tpm_limit_check CHECK (tpm_limit > 0);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS tpd_limit BIGINT
  CONSTRAINT tenants_tpd_limit_check CHECK (tpd_limit > 0 AND tpd_limit <= 9007199254740991);

-- `tokens.default_output` (row key tokens_default_output): output tokens a request reserves when its body names no cap.
-- Range: rules.ts TOKENS_DEFAULT_OUTPUT_RANGE. No row = DEFAULT_OUTPUT_TOKENS (src/core/token-estimate.ts).
-- The key list below is the whole set of settings keys; a later migration adding a setting must repeat it.
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_key_check;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_key_check
  CHECK (key IN ('enabled', 'default_priority', 'cache_ttl_sec', 'reserve', 'queue_max_wait_ms', 'queue_max_length', 'tokens_default_output'));
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_value_ck;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_value_ck CHECK (
  (key = 'enabled' AND jsonb_typeof(value) = 'boolean')
  OR (key IN ('default_priority', 'cache_ttl_sec', 'queue_max_wait_ms', 'queue_max_length', 'tokens_default_output') AND jsonb_typeof(value) = 'number')
  OR (key = 'reserve' AND jsonb_typeof(value) = 'array' AND jsonb_array_length(value) = 10)
);
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_tokens_default_output_check;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_tokens_default_output_check
  CHECK (key <> 'tokens_default_output' OR (value)::text::numeric BETWEEN 1 AND 1000000);
