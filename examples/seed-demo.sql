-- Demo priority mappings and settings for a laptop run. Idempotent: safe to apply again.
--
--   psql "$DATABASE_URL" -f examples/seed-demo.sql      (PostgreSQL; run `keypool migrate` first)
--   `npm start` applies the same rows to the embedded store on its first run.
--
-- Why no accounts here: upstream keys are stored only encrypted (AES-256-GCM, the ciphertext bound to the account
-- id and the key-ring version from KEYPOOL_ENCRYPTION_KEYS), so plain SQL cannot insert a usable account. Add demo
-- accounts with the CLI, which encrypts them (the keys below are obviously fake):
--   printf 'sk-demo-openai-0000000000000000' | keypool accounts add --provider openai --name demo-openai-1
--   printf 'sk-ant-demo-00000000000000000000' | keypool accounts add --provider anthropic --name demo-anthropic-1
-- and a client key with:
--   keypool keys create --name demo --tenant demo --expires-in 30d

INSERT INTO api_key_priority_mappings
  (pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description, enabled, created_by, updated_by)
VALUES
  ('kp_',              'prefix',   5, 'default',  'Default tenant',    'internal', 'Every keypool key: a middle priority',          true, 'demo-seed', 'demo-seed'),
  ('kp_team',          'prefix',   2, 'team-a',   'Team A',            'internal', 'Keys issued to team A (example prefix rule)',   true, 'demo-seed', 'demo-seed'),
  ('_batch',           'suffix',   9, 'batch',    'Batch jobs',        'internal', 'Low priority for batch keys (example suffix)',  true, 'demo-seed', 'demo-seed'),
  ('partner',          'contains', 4, 'partners', 'External partners', 'external', 'Partner keys (example contains rule)',          true, 'demo-seed', 'demo-seed'),
  ('^kp_vip[0-9]{2}',  'regex',    0, 'vip',      'VIP customers',     'external', 'Top priority (example regex, linear-time safe)', true, 'demo-seed', 'demo-seed')
ON CONFLICT (match_type, pattern) WHERE deleted_at IS NULL DO NOTHING;

-- Turn mapping on for the demo (the schema default is off: every request gets default_priority 7).
UPDATE api_key_priority_config SET value = 'true'::jsonb, updated_by = 'demo-seed'
WHERE key = 'enabled' AND deleted_at IS NULL AND value <> 'true'::jsonb;
