-- Settings of the admission queue (src/admission-queue.ts): `queue.max_wait_ms` (row key queue_max_wait_ms) and
-- `queue.max_length` (queue_max_length). Ranges: src/catalog/rules.ts (QUEUE_MAX_WAIT_MS_RANGE, QUEUE_MAX_LENGTH_RANGE);
-- test/catalog/rules-sql.test.ts checks they agree. No rows are inserted: a missing row reads as its default
-- (max_wait_ms 0 = never wait, the behaviour before this migration).
-- The key list below is the whole set of settings keys; a later migration adding a setting must repeat it.
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_key_check;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_key_check
  CHECK (key IN ('enabled', 'default_priority', 'cache_ttl_sec', 'reserve', 'queue_max_wait_ms', 'queue_max_length'));
ALTER TABLE api_key_priority_config DROP CONSTRAINT IF EXISTS api_key_priority_config_value_ck;
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_value_ck CHECK (
  (key = 'enabled' AND jsonb_typeof(value) = 'boolean')
  OR (key IN ('default_priority', 'cache_ttl_sec', 'queue_max_wait_ms', 'queue_max_length') AND jsonb_typeof(value) = 'number')
  OR (key = 'reserve' AND jsonb_typeof(value) = 'array' AND jsonb_array_length(value) = 10)
);
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_queue_max_wait_ms_check
  CHECK (key <> 'queue_max_wait_ms' OR (value)::text::numeric BETWEEN 0 AND 30000);
ALTER TABLE api_key_priority_config ADD CONSTRAINT api_key_priority_config_queue_max_length_check
  CHECK (key <> 'queue_max_length' OR (value)::text::numeric BETWEEN 1 AND 100000);
