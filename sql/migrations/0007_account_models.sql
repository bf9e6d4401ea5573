-- keypool schema, version 7: which models an account may serve, and the quota scope it shares with its siblings.
--
-- models: exact model names or prefix globs ending in one `*` (`gpt-4o*`); an empty array (the default) = any model.
-- The snapshot compiles the list once into a name set and a prefix list; a request for a model no active account of
-- its pool serves is refused with 400 model_not_available.
-- scope: the provider's quota scope the account belongs to (`openai-org-acme/project-x`: keys of one OpenAI project or
-- Anthropic workspace share one rate limit); NULL = the account is its own scope.
-- The CHECKs follow src/catalog/rules.ts (MODEL_PATTERN, MODELS_MAX, QUOTA_SCOPE), kept in agreement by
-- test/catalog/rules-sql.test.ts. A CHECK cannot use a subquery, so each element's shape is checked on the array
-- joined with newlines (no element may hold a newline itself, and array_position rules out NULL elements).

ALTER TABLE provider_accounts
  ADD COLUMN IF NOT EXISTS models TEXT[] NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS scope TEXT NULL;

ALTER TABLE provider_accounts DROP CONSTRAINT IF EXISTS provider_accounts_models_check;
ALTER TABLE provider_accounts ADD CONSTRAINT provider_accounts_models_check CHECK (
  cardinality(models) = 0
  OR (
    cardinality(models) <= 64
    AND array_position(models, NULL) IS NULL
    AND position(E'\n' in array_to_string(models, '')) = 0
    AND array_to_string(models, E'\n') ~ '^[A-Za-z0-9._:/@+-]{1,128}\*?(\n[A-Za-z0-9._:/@+-]{1,128}\*?)*$'
  )
);

ALTER TABLE provider_accounts DROP CONSTRAINT IF EXISTS provider_accounts_scope_check;
ALTER TABLE provider_accounts ADD CONSTRAINT provider_accounts_scope_check CHECK (
  scope IS NULL OR scope ~ '^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$'
);
