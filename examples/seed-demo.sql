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
-- and client keys whose human-chosen prefix the mappings below match (`kp_<prefix>_<random>`):
--   keypool keys create --name demo --tenant demo --expires-in 30d     -> kp_<random>: no mapping, default priority 5
--   keypool keys create --name team-a --prefix team-a                  -> kp_team-a_...: priority 2, tenant team-a
--   keypool keys create --name nightly --prefix batch-nightly         -> kp_batch-nightly_...: priority 9
--   keypool keys create --name acme --prefix acme-partner              -> kp_acme-partner_...: priority 4
--   keypool keys create --name vip --prefix vip01                      -> kp_vip01_...: priority 0
-- A key's own tenant (--tenant) wins over a mapping's; a mapping's tenant applies to keys without one.
-- Precedence among mappings: exact > longest prefix > longest suffix > longest contains > regex, so a catch-all
-- `kp_` prefix would shadow every contains and regex rule: the default priority plays that role instead.

INSERT INTO api_key_priority_mappings
  (pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description, enabled, created_by, updated_by)
VALUES
  ('kp_team-a_',       'prefix',   2, 'team-a',   'Team A',            'internal', 'Keys created with --prefix team-a (prefix rule)',              true, 'demo-seed', 'demo-seed'),
  ('kp_batch-',        'prefix',   9, 'batch',    'Batch jobs',        'internal', 'Keys created with --prefix batch-<job> (prefix rule)',         true, 'demo-seed', 'demo-seed'),
  ('-partner_',        'contains', 4, 'partners', 'External partners', 'external', 'Keys created with --prefix <name>-partner (contains rule)',    true, 'demo-seed', 'demo-seed'),
  ('^kp_vip[0-9]{2}_', 'regex',    0, 'vip',      'VIP customers',     'external', 'Keys created with --prefix vipNN (regex, linear-time safe)',   true, 'demo-seed', 'demo-seed')
-- The unique index (schema version 6) includes the window columns, NULL for these always-on rules.
ON CONFLICT (match_type, pattern, window_days, window_start, window_end, window_timezone) WHERE deleted_at IS NULL DO NOTHING;

-- Turn mapping on for the demo (the schema default is off: every request gets default_priority 7), and give keys
-- no mapping matches a middle priority.
UPDATE api_key_priority_config SET value = 'true'::jsonb, updated_by = 'demo-seed'
WHERE key = 'enabled' AND deleted_at IS NULL AND value <> 'true'::jsonb;
UPDATE api_key_priority_config SET value = '5'::jsonb, updated_by = 'demo-seed'
WHERE key = 'default_priority' AND deleted_at IS NULL AND value <> '5'::jsonb;
