-- keypool schema, version 2: admin API support.
--
-- admin_idempotency_keys remembers the result of an idempotent admin write (today: POST /admin/keys/:id/rotate with
-- an `idempotency-key` header) so a retried request returns the first answer instead of burning a second key, on
-- whichever replica the retry lands. The claim, the rotation and the remembered answer commit in ONE transaction
-- (src/admin/idempotency.ts), so a crash in between leaves neither.
--
-- The answer holds the new client key, so it is stored only encrypted: AES-256-GCM under the same key ring as the
-- upstream account keys (src/secrets/keyring.ts), AAD bound to the row's scope, resource and idempotency key.
-- The idempotency key itself is stored only as a SHA-256 digest.
--
-- Deliberate exception to the soft-delete convention: rows are a short-lived cache of answers (expires_at, 24 h by
-- default), not configuration; expired rows are deleted outright by the next idempotent write.

CREATE TABLE IF NOT EXISTS admin_idempotency_keys (
  id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Which operation: 'keys.rotate'.
  scope                TEXT NOT NULL CHECK (length(scope) BETWEEN 1 AND 64),
  -- The row the operation acted on (the system key's id for a rotation).
  resource_id          UUID NOT NULL,
  -- sha256(idempotency-key header), hex.
  idempotency_key_hash TEXT NOT NULL CHECK (idempotency_key_hash ~ '^[0-9a-f]{64}$'),
  -- sha256 of the normalised request (e.g. the grace window): a reused idempotency key with another request is refused.
  request_hash         TEXT NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
  response_status      INTEGER NOT NULL,
  -- base64(iv | tag | ciphertext) of the JSON answer, and the key ring version that encrypted it.
  response_encrypted   TEXT NOT NULL,
  response_key_version TEXT NOT NULL,
  created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at           TIMESTAMPTZ NOT NULL,
  created_by           TEXT,
  CONSTRAINT admin_idempotency_keys_uq UNIQUE (scope, resource_id, idempotency_key_hash)
);
CREATE INDEX IF NOT EXISTS admin_idempotency_keys_expires_ix ON admin_idempotency_keys (expires_at);
