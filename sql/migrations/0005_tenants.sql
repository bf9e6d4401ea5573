-- keypool schema, version 5: tenants with request quotas, request quotas per client key, the priority.reserve setting.
--
-- tenants: a tenant id (the TENANT_ID rule of src/catalog/rules.ts) that keys and mappings already carry as free text
-- gets a row to hold its limits. There is deliberately no foreign key from system_api_keys.tenant_id or
-- api_key_priority_mappings.tenant_id: those ids existed before this table (labels forwarded as x-keypool-tenant) and
-- stay valid without a row; a tenant id with no row simply has no tenant quota. A tenant row is the natural key itself,
-- so a delete is a real DELETE (audited); re-creating the id later starts with fresh limits.
-- Limits: requests per minute (sliding 60 s) and per calendar day of KEYPOOL_QUOTA_TZ; NULL = unlimited. Token
-- quotas wait for token accounting and have no columns yet.

CREATE TABLE IF NOT EXISTS tenants (
  id          TEXT PRIMARY KEY CONSTRAINT tenants_id_check CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
  name        TEXT NOT NULL CONSTRAINT tenants_name_check CHECK (length(name) BETWEEN 1 AND 100),
  rpm_limit   INTEGER CONSTRAINT tenants_rpm_limit_check CHECK (rpm_limit > 0),
  rpd_limit   INTEGER CONSTRAINT tenants_rpd_limit_check CHECK (rpd_limit > 0),
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  created_by  TEXT,
  updated_by  TEXT
);

DROP TRIGGER IF EXISTS tenants_touch ON tenants;
CREATE TRIGGER tenants_touch BEFORE UPDATE ON tenants
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS tenants_changed ON tenants;
CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();

-- Request quotas of one client key (NULL = unlimited), across every provider.
ALTER TABLE system_api_keys ADD COLUMN IF NOT EXISTS rpm_limit INTEGER CONSTRAINT system_api_keys_rpm_limit_check CHECK (rpm_limit > 0);
ALTER TABLE system_api_keys ADD COLUMN IF NOT EXISTS rpd_limit INTEGER CONSTRAINT system_api_keys_rpd_limit_check CHECK (rpd_limit > 0);

-- priority.reserve: a JSON array of 10 fractions (index = priority), each in [0, 1).
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_key_check;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_key_check
  CHECK (key IN ('enabled', 'default_priority', 'cache_ttl_sec', 'reserve'));
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_value_ck;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_value_ck CHECK (
  (key = 'enabled' AND jsonb_typeof(value) = 'boolean')
  OR (key IN ('default_priority', 'cache_ttl_sec') AND jsonb_typeof(value) = 'number')
  OR (key = 'reserve' AND jsonb_typeof(value) = 'array' AND jsonb_array_length(value) = 10)
);

ALTER TABLE api_key_audit_logs DROP CONSTRAINT IF EXISTS api_key_audit_logs_action_check;
ALTER TABLE api_key_audit_logs ADD CONSTRAINT api_key_audit_logs_action_check CHECK (action IN (
  'created', 'updated', 'rotated', 'revoked', 'deleted',
  'denied_ip', 'denied_expired', 'denied_revoked',
  'account_created', 'account_updated', 'account_disabled', 'account_enabled',
  'account_invalidated', 'account_deleted',
  'mapping_created', 'mapping_updated', 'mapping_deleted',
  'tenant_created', 'tenant_updated', 'tenant_deleted',
  'config_set', 'audit_pruned'));
