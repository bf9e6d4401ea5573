-- keypool schema, version 3: audit retention and aggregated denials.
--
-- Retention. The audit log stays append-only for everyone (UPDATE and TRUNCATE are always refused). DELETE is allowed
-- only inside keypool_prune_audit(), which raises a transaction-local flag the trigger checks, deletes the rows older
-- than the given instant, lowers the flag and records what it did as an `audit_pruned` row: pruning is itself
-- audited, and a DELETE anywhere else is still refused. The function is SECURITY DEFINER, so a deployment that wants
-- the database to enforce this too can REVOKE DELETE ON api_key_audit_logs from keypool's role and GRANT EXECUTE on
-- the function only (`keypool audit prune` and the automatic retention go through it). Works the same on PGlite.
--
-- Aggregated denials. A flood of identical denials (same key, action and client address) is written as one row per
-- flush window with the number of requests it stands for in `occurrences`, instead of one row per request.

ALTER TABLE api_key_audit_logs ADD COLUMN IF NOT EXISTS occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1);

ALTER TABLE api_key_audit_logs DROP CONSTRAINT IF EXISTS api_key_audit_logs_action_check;
ALTER TABLE api_key_audit_logs ADD CONSTRAINT api_key_audit_logs_action_check CHECK (action IN (
  'created', 'updated', 'rotated', 'revoked', 'deleted',
  'denied_ip', 'denied_expired', 'denied_revoked',
  'account_created', 'account_updated', 'account_disabled', 'account_enabled',
  'account_invalidated', 'account_deleted',
  'mapping_created', 'mapping_updated', 'mapping_deleted',
  'config_set', 'audit_pruned'));

-- The append-only rule, with the one exception: a DELETE while keypool_prune_audit() holds the flag.
CREATE OR REPLACE FUNCTION keypool_reject_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('keypool.audit_prune', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'api_key_audit_logs is append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Deletes audit rows created before `before`, records an `audit_pruned` row by `actor`, returns how many went.
CREATE OR REPLACE FUNCTION keypool_prune_audit(before TIMESTAMPTZ, actor TEXT) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  deleted BIGINT;
BEGIN
  PERFORM set_config('keypool.audit_prune', 'on', true);
  DELETE FROM api_key_audit_logs WHERE created_at < before;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  PERFORM set_config('keypool.audit_prune', 'off', true);
  INSERT INTO api_key_audit_logs (key_id, action, actor, metadata)
    VALUES (NULL, 'audit_pruned', actor, jsonb_build_object('before', before, 'deleted', deleted));
  RETURN deleted;
END;
$$;
