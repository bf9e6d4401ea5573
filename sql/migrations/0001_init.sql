-- keypool schema, version 1.
--
-- Runs unchanged on PostgreSQL 15+ and on PGlite (the embedded default). Applied by `keypool migrate`
-- (src/stores/migrate.ts) inside one transaction under an advisory lock and recorded in schema_migrations;
-- never edit this file once released: append 0002_*.sql instead (the migrator refuses a changed checksum).
--
-- Conventions for configuration tables:
--   id UUID PRIMARY KEY DEFAULT gen_random_uuid()
--   created_at / updated_at TIMESTAMPTZ NOT NULL DEFAULT now()   (updated_at kept by keypool_touch_updated_at)
--   deleted_at TIMESTAMPTZ                                          (soft delete: NULL = active; every read filters it)
--   created_by / updated_by TEXT                                    (actor: CLI user, admin token name, 'system')
--   uniqueness is "unique among active rows": partial unique indexes WHERE deleted_at IS NULL.
-- Deliberate exceptions, each explained at its table: api_key_audit_logs (append-only: no update/delete columns)
-- and account_usage_stats (counters: updated in place, never soft-deleted).
-- Enumerations are TEXT with CHECK constraints (cheaper to extend than enum types, identical on PGlite).

-- ---------------------------------------------------------------------------------------------
-- Shared trigger functions
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION keypool_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

-- A monotonically increasing counter bumped by every configuration change. The change feed below also NOTIFYs;
-- the counter lets a reader that cannot LISTEN (or that missed a notification) detect a change with one cheap read.
CREATE TABLE IF NOT EXISTS config_version (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  version    BIGINT NOT NULL DEFAULT 0,
  changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO config_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

-- Change feed: every write to a table the compiled snapshot reads bumps config_version and sends
-- NOTIFY keypool_config with the table name as payload. PostgreSQL folds identical notifications of one
-- transaction into one, so bulk writes cost a single wake-up per table.
CREATE OR REPLACE FUNCTION keypool_notify_config_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE config_version SET version = version + 1, changed_at = now() WHERE id = 1;
  PERFORM pg_notify('keypool_config', TG_TABLE_NAME);
  RETURN NULL;
END;
$$;

-- The audit log is append-only: UPDATE, DELETE and TRUNCATE are refused for everyone, keypool included.
CREATE OR REPLACE FUNCTION keypool_reject_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'api_key_audit_logs is append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- providers: one row per upstream API family; the gateway route names it by slug.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS providers (
  id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  slug               TEXT NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  display_name       TEXT NOT NULL,
  -- Which header carries the upstream key: bearer = `authorization: Bearer <key>`, else the header of that name.
  auth_style         TEXT NOT NULL CHECK (auth_style IN ('bearer', 'x-api-key', 'api-key', 'x-goog-api-key')),
  -- Which rate-limit response headers the provider speaks.
  rate_limit_dialect TEXT NOT NULL CHECK (rate_limit_dialect IN ('openai', 'anthropic', 'azure', 'gemini', 'none')),
  default_strategy   TEXT NOT NULL DEFAULT 'round-robin'
                     CHECK (default_strategy IN ('round-robin', 'weighted-random', 'priority', 'least-loaded')),
  created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at         TIMESTAMPTZ,
  created_by         TEXT,
  updated_by         TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS providers_slug_active_uq ON providers (slug) WHERE deleted_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- provider_accounts: pooled upstream credentials. The key is stored only encrypted (AES-256-GCM, see
-- src/secrets/keyring.ts); key_last4 lets operators recognise it.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS provider_accounts (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id     UUID NOT NULL REFERENCES providers (id),
  name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- base64(iv[12] | tag[16] | ciphertext), AAD = "<id>:<key_version>".
  encrypted_key   TEXT NOT NULL,
  key_version     TEXT NOT NULL,
  key_last4       TEXT NOT NULL,
  weight          INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000000),
  -- Priority tier for the `priority` strategy: 0 is tried first.
  priority_tier   INTEGER NOT NULL DEFAULT 0 CHECK (priority_tier BETWEEN 0 AND 1000),
  -- NULL = learn from the provider's headers / unlimited.
  rpm_limit       INTEGER CHECK (rpm_limit > 0),
  tpm_limit       INTEGER CHECK (tpm_limit > 0),
  max_concurrency INTEGER CHECK (max_concurrency > 0),
  status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'invalid')),
  disabled_reason TEXT,
  tags            JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(tags) = 'object'),
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at      TIMESTAMPTZ,
  created_by      TEXT,
  updated_by      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS provider_accounts_name_active_uq
  ON provider_accounts (provider_id, name) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS provider_accounts_provider_active_ix
  ON provider_accounts (provider_id, priority_tier, name) WHERE deleted_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- account_usage_stats: per account per minute bucket, flushed with an additive upsert by every replica.
-- Counters only: rows are updated in place (updated_at kept) and never soft-deleted (no deleted_*/.._by columns).
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS account_usage_stats (
  id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  account_id     UUID NOT NULL REFERENCES provider_accounts (id),
  bucket_start   TIMESTAMPTZ NOT NULL,
  requests       BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
  successes      BIGINT NOT NULL DEFAULT 0 CHECK (successes >= 0),
  rate_limited   BIGINT NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
  client_errors  BIGINT NOT NULL DEFAULT 0 CHECK (client_errors >= 0),
  server_errors  BIGINT NOT NULL DEFAULT 0 CHECK (server_errors >= 0),
  input_tokens   BIGINT NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens  BIGINT NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  latency_ms_sum BIGINT NOT NULL DEFAULT 0 CHECK (latency_ms_sum >= 0),
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT account_usage_stats_bucket_uq UNIQUE (account_id, bucket_start)
);
CREATE INDEX IF NOT EXISTS account_usage_stats_bucket_ix ON account_usage_stats (bucket_start);

-- ---------------------------------------------------------------------------------------------
-- system_api_keys: the keys clients present. Only HMAC-SHA256(pepper, key) is stored, plus a display prefix.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS system_api_keys (
  id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name                    TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  tenant_id               TEXT,
  key_prefix              TEXT NOT NULL,
  key_hash                TEXT NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
  status                  TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  expires_at              TIMESTAMPTZ,
  -- Normalised CIDRs (validated by src/validation.ts: four-part decimal IPv4 only); empty = any address.
  allowed_ips             TEXT[] NOT NULL DEFAULT '{}',
  rotate_after_days       INTEGER CHECK (rotate_after_days > 0),
  last_rotated_at         TIMESTAMPTZ,
  -- Rotation grace: the digest of the key before the last rotation keeps working until previous_key_expires_at.
  previous_key_hash       TEXT CHECK (previous_key_hash ~ '^[0-9a-f]{64}$'),
  previous_key_expires_at TIMESTAMPTZ,
  last_used_at            TIMESTAMPTZ,
  revoked_at              TIMESTAMPTZ,
  created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at              TIMESTAMPTZ,
  created_by              TEXT,
  updated_by              TEXT,
  CONSTRAINT system_api_keys_previous_pair_ck
    CHECK ((previous_key_hash IS NULL) = (previous_key_expires_at IS NULL))
);
-- Digests are unique for ever (a digest is never reused, even after a soft delete).
CREATE UNIQUE INDEX IF NOT EXISTS system_api_keys_key_hash_uq ON system_api_keys (key_hash);
CREATE UNIQUE INDEX IF NOT EXISTS system_api_keys_name_active_uq ON system_api_keys (name) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS system_api_keys_tenant_active_ix ON system_api_keys (tenant_id) WHERE deleted_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- api_key_audit_logs: append-only history (key lifecycle, denials, account health, configuration changes).
-- Only id/created_at/actor: rows are never updated or deleted (trigger below), so the update/delete
-- convention columns would be dead weight.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS api_key_audit_logs (
  id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  key_id     UUID,
  action     TEXT NOT NULL CHECK (action IN (
               'created', 'updated', 'rotated', 'revoked', 'deleted',
               'denied_ip', 'denied_expired', 'denied_revoked',
               'account_created', 'account_updated', 'account_disabled', 'account_enabled',
               'account_invalidated', 'account_deleted',
               'mapping_created', 'mapping_updated', 'mapping_deleted',
               'config_set')),
  actor      TEXT NOT NULL,
  client_ip  TEXT,
  metadata   JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_key_audit_logs_created_ix ON api_key_audit_logs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS api_key_audit_logs_key_ix ON api_key_audit_logs (key_id, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- api_key_priority_mappings: presented key pattern -> priority (0 = highest) and tenant.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS api_key_priority_mappings (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  pattern     TEXT NOT NULL CHECK (length(pattern) BETWEEN 1 AND 512),
  match_type  TEXT NOT NULL CHECK (match_type IN ('exact', 'prefix', 'suffix', 'contains', 'regex')),
  priority    INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 1000),
  tenant_id   TEXT,
  tenant_name TEXT,
  tenant_type TEXT CHECK (tenant_type IN ('internal', 'external')),
  description TEXT,
  enabled     BOOLEAN NOT NULL DEFAULT true,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at  TIMESTAMPTZ,
  created_by  TEXT,
  updated_by  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_key_priority_mappings_pattern_active_uq
  ON api_key_priority_mappings (match_type, pattern) WHERE deleted_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- api_key_priority_config: one row per setting; value is JSON (boolean or integer).
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS api_key_priority_config (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  key         TEXT NOT NULL CHECK (key IN ('enabled', 'default_priority', 'cache_ttl_sec')),
  value       JSONB NOT NULL,
  description TEXT,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at  TIMESTAMPTZ,
  created_by  TEXT,
  updated_by  TEXT,
  CONSTRAINT api_key_priority_config_value_ck CHECK (
    (key = 'enabled' AND jsonb_typeof(value) = 'boolean')
    OR (key IN ('default_priority', 'cache_ttl_sec') AND jsonb_typeof(value) = 'number')
  )
);
CREATE UNIQUE INDEX IF NOT EXISTS api_key_priority_config_key_active_uq
  ON api_key_priority_config (key) WHERE deleted_at IS NULL;

INSERT INTO api_key_priority_config (key, value, description, created_by, updated_by) VALUES
  ('enabled', 'false'::jsonb, 'Match presented keys against priority mappings; false = every request gets default_priority', 'migration', 'migration'),
  ('default_priority', '7'::jsonb, 'Priority (0 = highest) when no mapping matches or matching is disabled', 'migration', 'migration'),
  ('cache_ttl_sec', '300'::jsonb, 'How long a resolved key -> priority answer may be cached', 'migration', 'migration')
ON CONFLICT (key) WHERE deleted_at IS NULL DO NOTHING;

-- ---------------------------------------------------------------------------------------------
-- Triggers
-- ---------------------------------------------------------------------------------------------

DROP TRIGGER IF EXISTS providers_touch ON providers;
CREATE TRIGGER providers_touch BEFORE UPDATE ON providers
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS provider_accounts_touch ON provider_accounts;
CREATE TRIGGER provider_accounts_touch BEFORE UPDATE ON provider_accounts
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS account_usage_stats_touch ON account_usage_stats;
CREATE TRIGGER account_usage_stats_touch BEFORE UPDATE ON account_usage_stats
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS system_api_keys_touch ON system_api_keys;
CREATE TRIGGER system_api_keys_touch BEFORE UPDATE ON system_api_keys
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS api_key_priority_mappings_touch ON api_key_priority_mappings;
CREATE TRIGGER api_key_priority_mappings_touch BEFORE UPDATE ON api_key_priority_mappings
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();
DROP TRIGGER IF EXISTS api_key_priority_config_touch ON api_key_priority_config;
CREATE TRIGGER api_key_priority_config_touch BEFORE UPDATE ON api_key_priority_config
  FOR EACH ROW EXECUTE FUNCTION keypool_touch_updated_at();

DROP TRIGGER IF EXISTS api_key_audit_logs_append_only ON api_key_audit_logs;
CREATE TRIGGER api_key_audit_logs_append_only BEFORE UPDATE OR DELETE ON api_key_audit_logs
  FOR EACH ROW EXECUTE FUNCTION keypool_reject_audit_change();
DROP TRIGGER IF EXISTS api_key_audit_logs_no_truncate ON api_key_audit_logs;
CREATE TRIGGER api_key_audit_logs_no_truncate BEFORE TRUNCATE ON api_key_audit_logs
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_reject_audit_change();

DROP TRIGGER IF EXISTS providers_changed ON providers;
CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE ON providers
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
DROP TRIGGER IF EXISTS provider_accounts_changed ON provider_accounts;
CREATE TRIGGER provider_accounts_changed AFTER INSERT OR UPDATE OR DELETE ON provider_accounts
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
DROP TRIGGER IF EXISTS api_key_priority_mappings_changed ON api_key_priority_mappings;
CREATE TRIGGER api_key_priority_mappings_changed AFTER INSERT OR UPDATE OR DELETE ON api_key_priority_mappings
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
DROP TRIGGER IF EXISTS api_key_priority_config_changed ON api_key_priority_config;
CREATE TRIGGER api_key_priority_config_changed AFTER INSERT OR UPDATE OR DELETE ON api_key_priority_config
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
-- system_api_keys: recording last_used_at (flushed every few seconds by every replica) is not a configuration
-- change, so those updates must not wake every snapshot holder. Row-level, with a WHEN that ignores them.
DROP TRIGGER IF EXISTS system_api_keys_changed_ins_del ON system_api_keys;
CREATE TRIGGER system_api_keys_changed_ins_del AFTER INSERT OR DELETE ON system_api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION keypool_notify_config_change();
DROP TRIGGER IF EXISTS system_api_keys_changed_upd ON system_api_keys;
CREATE TRIGGER system_api_keys_changed_upd AFTER UPDATE ON system_api_keys
  FOR EACH ROW
  WHEN ((to_jsonb(OLD) - 'last_used_at' - 'updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at' - 'updated_at'))
  EXECUTE FUNCTION keypool_notify_config_change();
