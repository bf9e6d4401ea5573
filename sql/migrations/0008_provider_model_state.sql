-- keypool schema, version 8: per-model provider state, switched on per provider.
--
-- per_model_state: keypool keeps the provider's 429 cooldowns and reported limits per (account or scope, model) for
-- every request of this provider, not only for pools where some account has a `models` list. Knowing the model of
-- an OpenAI/Anthropic-style request means reading its JSON body, so with this on the gateway buffers that provider's
-- request bodies (up to its buffer limit, at most 1 MiB read) before keypool decides; SSE responses are unaffected.
-- Off (the default): such pools stay headers-only and keep one learned state per account (or scope).
-- Providers whose dialect reports no per-model limits (gemini, none) ignore it.

ALTER TABLE providers ADD COLUMN IF NOT EXISTS per_model_state BOOLEAN NOT NULL DEFAULT false;
