-- keypool schema, version 3: the CHECK constraints follow src/catalog/rules.ts.
--
-- Until now the database accepted wider ranges than keypool's validation (priority 0-1000 against 0-9, weight up to
-- 1,000,000 against 1,000, a slug ending in '-', 200-character names against 100). Every write goes through the
-- catalog's validation, so the difference only let a hand-written SQL seed store a row the CLI and the admin API
-- would refuse. test/catalog/rules-sql.test.ts checks each constraint against the rule at its boundaries.
--
-- NOT VALID: rows written under the old constraints stay readable (nothing is rewritten on upgrade); new and updated
-- rows must satisfy the new ones. Constraint names keep PostgreSQL's <table>_<column>_check form, which the catalog
-- maps back to the field an operator named (src/catalog/sql.ts).

ALTER TABLE providers DROP CONSTRAINT IF EXISTS providers_slug_check;
ALTER TABLE providers ADD CONSTRAINT providers_slug_check
  CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$') NOT VALID;

ALTER TABLE provider_accounts DROP CONSTRAINT IF EXISTS provider_accounts_name_check;
ALTER TABLE provider_accounts ADD CONSTRAINT provider_accounts_name_check
  CHECK (char_length(name) BETWEEN 1 AND 100) NOT VALID;
ALTER TABLE provider_accounts DROP CONSTRAINT IF EXISTS provider_accounts_weight_check;
ALTER TABLE provider_accounts ADD CONSTRAINT provider_accounts_weight_check
  CHECK (weight BETWEEN 1 AND 1000) NOT VALID;
ALTER TABLE provider_accounts DROP CONSTRAINT IF EXISTS provider_accounts_priority_tier_check;
ALTER TABLE provider_accounts ADD CONSTRAINT provider_accounts_priority_tier_check
  CHECK (priority_tier BETWEEN 0 AND 100) NOT VALID;

ALTER TABLE system_api_keys DROP CONSTRAINT IF EXISTS system_api_keys_name_check;
ALTER TABLE system_api_keys ADD CONSTRAINT system_api_keys_name_check
  CHECK (char_length(name) BETWEEN 1 AND 100) NOT VALID;
ALTER TABLE system_api_keys DROP CONSTRAINT IF EXISTS system_api_keys_tenant_id_check;
ALTER TABLE system_api_keys ADD CONSTRAINT system_api_keys_tenant_id_check
  CHECK (tenant_id ~ '^[A-Za-z0-9._-]{1,64}$') NOT VALID;
ALTER TABLE system_api_keys DROP CONSTRAINT IF EXISTS system_api_keys_rotate_after_days_check;
ALTER TABLE system_api_keys ADD CONSTRAINT system_api_keys_rotate_after_days_check
  CHECK (rotate_after_days BETWEEN 1 AND 3650) NOT VALID;

ALTER TABLE api_key_priority_mappings DROP CONSTRAINT IF EXISTS api_key_priority_mappings_priority_check;
ALTER TABLE api_key_priority_mappings ADD CONSTRAINT api_key_priority_mappings_priority_check
  CHECK (priority BETWEEN 0 AND 9) NOT VALID;
ALTER TABLE api_key_priority_mappings DROP CONSTRAINT IF EXISTS api_key_priority_mappings_pattern_check;
ALTER TABLE api_key_priority_mappings ADD CONSTRAINT api_key_priority_mappings_pattern_check
  CHECK (char_length(pattern) BETWEEN 1 AND 256) NOT VALID;
ALTER TABLE api_key_priority_mappings DROP CONSTRAINT IF EXISTS api_key_priority_mappings_tenant_id_check;
ALTER TABLE api_key_priority_mappings ADD CONSTRAINT api_key_priority_mappings_tenant_id_check
  CHECK (tenant_id ~ '^[A-Za-z0-9._-]{1,64}$') NOT VALID;

ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_default_priority_check;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_default_priority_check
  CHECK (key <> 'default_priority' OR (jsonb_typeof(value) = 'number' AND (value)::text::numeric BETWEEN 0 AND 9)) NOT VALID;
