// Idempotent admin writes, persisted (sql/migrations/0002_admin.sql), so a retry returns the first answer on any
// replica. One transaction holds: an advisory lock on (scope, resource, idempotency key) that serialises concurrent
// retries, the look-up of a remembered answer, the write itself and the remembered answer. A failed write rolls back
// everything, so the client may retry it with the same key. Answers are encrypted with the account key ring (they
// hold a freshly issued client key); the idempotency key is stored as a digest only.
import { createHash } from 'node:crypto';
import type { Keyring } from '../secrets/keyring.js';
import type { SqlClient } from '../stores/sql-client.js';
import { badRequest, HttpError } from './http-errors.js';

export interface RememberedReply {
  readonly status: number;
  readonly body: unknown;
}

export interface IdempotentRequest {
  /** Operation name, e.g. `keys.rotate`. */
  readonly scope: string;
  /** Row the operation acts on (UUID). */
  readonly resourceId: string;
  /** The client's `idempotency-key` header, already checked with `checkIdempotencyKey`. */
  readonly idempotencyKey: string;
  /** Normalised request the key was first used with; a different one under the same key is refused (422). */
  readonly request: unknown;
  readonly actor: string;
}

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Validates an `idempotency-key` header value (1-255 visible ASCII characters); undefined when absent. */
export function checkIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!KEY_PATTERN.test(value)) {
    throw badRequest('invalid_idempotency_key', 'idempotency-key must be 1-255 visible ASCII characters (a UUID is a good choice)', 'idempotency-key');
  }
  return value;
}

export class IdempotencyStore {
  constructor(
    private readonly keyring: Keyring,
    private readonly ttlMs: number = IDEMPOTENCY_TTL_MS,
  ) {}

  /**
   * Inside `tx` (a transaction): returns the remembered answer for the request, or runs `perform` (with the same tx)
   * and remembers its answer. `replayed` tells which happened.
   */
  async run(
    tx: SqlClient,
    request: IdempotentRequest,
    perform: () => Promise<RememberedReply>,
  ): Promise<RememberedReply & { readonly replayed: boolean }> {
    const keyHash = sha256(request.idempotencyKey);
    const requestHash = sha256(JSON.stringify(request.request ?? null));
    const [high, low] = lockKeys(`${request.scope}|${request.resourceId}|${keyHash}`);
    await tx.query('SELECT pg_advisory_xact_lock($1::int4, $2::int4)', [high, low]);
    await tx.query('DELETE FROM admin_idempotency_keys WHERE expires_at <= now()');
    const rows = await tx.query<StoredRow>(
      `SELECT request_hash, response_status, response_encrypted, response_key_version
         FROM admin_idempotency_keys
        WHERE scope = $1 AND resource_id = $2 AND idempotency_key_hash = $3`,
      [request.scope, request.resourceId, keyHash],
    );
    const stored = rows[0];
    if (stored) {
      if (stored.request_hash !== requestHash) {
        throw new HttpError(
          422,
          'idempotency_key_reused',
          'this idempotency-key was already used with a different request body; use a new key',
          'idempotency-key',
        );
      }
      const text = this.keyring.decrypt(
        { ciphertext: stored.response_encrypted, keyVersion: stored.response_key_version },
        aadId(request.scope, request.resourceId, keyHash),
      );
      return { status: stored.response_status, body: JSON.parse(text) as unknown, replayed: true };
    }
    const reply = await perform();
    const sealed = this.keyring.encrypt(JSON.stringify(reply.body), aadId(request.scope, request.resourceId, keyHash));
    await tx.query(
      `INSERT INTO admin_idempotency_keys
         (scope, resource_id, idempotency_key_hash, request_hash, response_status, response_encrypted,
          response_key_version, expires_at, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + ($8::bigint * interval '1 millisecond'), $9)`,
      [request.scope, request.resourceId, keyHash, requestHash, reply.status, sealed.ciphertext, sealed.keyVersion, this.ttlMs, request.actor],
    );
    return { ...reply, replayed: false };
  }
}

interface StoredRow {
  readonly request_hash: string;
  readonly response_status: number;
  readonly response_encrypted: string;
  readonly response_key_version: string;
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Two signed 32-bit advisory lock keys from a digest (the two-key space never meets the migration lock's). */
function lockKeys(text: string): [number, number] {
  const digest = createHash('sha256').update(text, 'utf8').digest();
  return [digest.readInt32BE(0), digest.readInt32BE(4)];
}

function aadId(scope: string, resourceId: string, keyHash: string): string {
  return `idempotency:${scope}:${resourceId}:${keyHash}`;
}
