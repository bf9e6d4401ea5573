-- The six providers keypool knows out of the box. Idempotent: applied by `keypool migrate` after the migrations on
-- every run; an existing active row with the same slug is left untouched (operators may have changed its strategy).
-- auth_style:         bearer = `authorization: Bearer <key>`; otherwise the header of that name carries the key.
-- rate_limit_dialect: which rate-limit response headers the provider sends (see src/core/providers/).
INSERT INTO providers (slug, display_name, auth_style, rate_limit_dialect, default_strategy, created_by, updated_by) VALUES
  ('openai',            'OpenAI',                    'bearer',         'openai',    'round-robin', 'seed', 'seed'),
  ('anthropic',         'Anthropic',                 'x-api-key',      'anthropic', 'round-robin', 'seed', 'seed'),
  ('azure-openai',      'Azure OpenAI',              'api-key',        'azure',     'round-robin', 'seed', 'seed'),
  ('gemini',            'Google Gemini',             'x-goog-api-key', 'gemini',    'round-robin', 'seed', 'seed'),
  ('openrouter',        'OpenRouter',                'bearer',         'openai',    'round-robin', 'seed', 'seed'),
  ('openai-compatible', 'OpenAI-compatible server',  'bearer',         'openai',    'round-robin', 'seed', 'seed')
ON CONFLICT (slug) WHERE deleted_at IS NULL DO NOTHING;
