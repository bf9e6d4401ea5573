// Client (system) keys: their SQL. A key's plaintext is generated here, returned once, and stored only as its
// HMAC digest plus a display prefix.
import { digestKey, importedKeyDisplayPrefix, keyDisplayPrefix } from '../../core/apikey.js';
import { generateClientKey } from '../../secrets/client-key.js';
import { ConflictError, InvalidInputError, StateError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { isUuid } from '../rules.js';
import { activeRowByRef, mapErrors, UpdateBuilder, type RowLookup } from '../sql.js';
import { KEY_COLUMNS, toKey, type DbKey, type SystemKeyRow } from './rows.js';
import type { KeyPatch, NewKey } from './schema.js';

export interface KeyFilter {
  /** Only active keys whose rotate_after_days has elapsed since the last rotation (or creation) at `now`. */
  readonly dueForRotation?: boolean | undefined;
  /** Reference time for dueForRotation; default the database's now(). */
  readonly now?: Date | undefined;
  readonly status?: 'active' | 'revoked' | undefined;
  readonly tenantId?: string | undefined;
  /** Case-insensitive substring of the name or the display prefix. */
  readonly search?: string | undefined;
  /** Keyset pagination: only keys whose name sorts after this one (names are unique among live keys). */
  readonly afterName?: string | undefined;
  /** At most this many rows (by name). Unset: every match. */
  readonly limit?: number | undefined;
}

/** A key as created or rotated: the plaintext is returned exactly once and never stored. */
export interface IssuedKey {
  readonly row: SystemKeyRow;
  readonly plaintextKey: string;
}

export class KeyDao {
  constructor(
    private readonly sql: SqlClient,
    /** HMAC pepper for client key digests (src/secrets/pepper.ts). */
    private readonly pepper: Uint8Array,
  ) {}

  /** Issues a key: returns the plaintext once; stores its digest and display prefix. @throws ConflictError (name) */
  async create(input: NewKey, actor: string): Promise<IssuedKey> {
    const plaintextKey = generateClientKey(input.prefix ?? null);
    const row = await this.insert(input, plaintextKey, keyDisplayPrefix(plaintextKey), false, actor);
    return { row, plaintextKey };
  }

  /**
   * Brings in a key the user already has (validated by validateImportedKey): only its digest and a short display
   * prefix are stored; it then works exactly like an issued key. @throws ConflictError (name, or the same key twice)
   */
  async import(input: NewKey, existingKey: string, actor: string): Promise<SystemKeyRow> {
    return this.insert(input, existingKey, importedKeyDisplayPrefix(existingKey), true, actor);
  }

  private async insert(input: NewKey, plaintextKey: string, displayPrefix: string, imported: boolean, actor: string): Promise<SystemKeyRow> {
    return this.sql.transaction(async (tx) => {
      const rows = await mapErrors(
        () =>
          tx.query<DbKey>(
            `INSERT INTO system_api_keys (name, tenant_id, key_prefix, key_hash, expires_at, allowed_ips, rotate_after_days,
                created_by, updated_by, rpm_limit, rpd_limit, tpm_limit, tpd_limit)
             VALUES ($1, $2, $3, $4, $5, $6::text[], $7, $8, $8, $9, $10, $11, $12) RETURNING ${KEY_COLUMNS}`,
            [
              input.name,
              input.tenantId ?? null,
              displayPrefix,
              digestKey(this.pepper, plaintextKey),
              input.expiresAt ?? null,
              [...(input.allowedIps ?? [])],
              input.rotateAfterDays ?? null,
              actor,
              input.rpmLimit ?? null,
              input.rpdLimit ?? null,
              input.tpmLimit ?? null,
              input.tpdLimit ?? null,
            ],
          ),
        {
          system_api_keys_name_active_uq: () => new ConflictError('key', 'name', `a key named "${input.name}" already exists`),
          system_api_keys_key_hash_uq: () => new ConflictError('key', 'key', 'this key is already stored under another name'),
        },
      );
      const row = toKey(rows[0]!);
      const metadata = {
        name: row.name,
        tenantId: row.tenantId,
        keyPrefix: row.keyPrefix,
        allowedIps: row.allowedIps,
        expiresAt: row.expiresAt?.toISOString() ?? null,
        ...(row.rpmLimit === null ? {} : { rpmLimit: row.rpmLimit }),
        ...(row.rpdLimit === null ? {} : { rpdLimit: row.rpdLimit }),
        ...((row.tpmLimit ?? null) === null ? {} : { tpmLimit: row.tpmLimit }),
        ...((row.tpdLimit ?? null) === null ? {} : { tpdLimit: row.tpdLimit }),
      };
      await insertAudit(tx, [{ keyId: row.id, action: 'created', actor, metadata: imported ? { ...metadata, imported: true } : metadata }]);
      return row;
    });
  }

  async list(filter: KeyFilter = {}): Promise<SystemKeyRow[]> {
    const where = ['deleted_at IS NULL'];
    const params: unknown[] = [];
    if (filter.status !== undefined) {
      params.push(filter.status);
      where.push(`status = $${params.length}`);
    }
    if (filter.tenantId !== undefined) {
      params.push(filter.tenantId);
      where.push(`tenant_id = $${params.length}`);
    }
    if (filter.dueForRotation) {
      params.push(filter.now ?? null);
      where.push(
        `status = 'active' AND rotate_after_days IS NOT NULL
         AND COALESCE(last_rotated_at, created_at) + rotate_after_days * interval '1 day' <= COALESCE($${params.length}::timestamptz, now())`,
      );
    }
    if (filter.search !== undefined) {
      params.push(`%${filter.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      where.push(`(name ILIKE $${params.length} OR key_prefix ILIKE $${params.length})`);
    }
    if (filter.afterName !== undefined) {
      params.push(filter.afterName);
      where.push(`name > $${params.length}`);
    }
    let limit = '';
    if (filter.limit !== undefined) {
      params.push(filter.limit);
      limit = `LIMIT $${params.length}`;
    }
    const rows = await this.sql.query<DbKey>(
      `SELECT ${KEY_COLUMNS} FROM system_api_keys WHERE ${where.join(' AND ')} ORDER BY name ${limit}`,
      params,
    );
    return rows.map(toKey);
  }

  /** By id or name. @throws NotFoundError */
  async get(ref: string): Promise<SystemKeyRow> {
    return toKey(await keyByRef(this.sql, ref, false));
  }

  /** @throws NotFoundError, ConflictError (name) */
  async update(ref: string, patch: KeyPatch, actor: string): Promise<SystemKeyRow> {
    return this.sql.transaction(async (tx) => {
      const current = await keyByRef(tx, ref, true);
      const update = new UpdateBuilder();
      const changed: Record<string, unknown> = {};
      const set = (column: string, value: unknown, field: string, shown: unknown, cast = ''): void => {
        update.set(column, value, cast);
        changed[field] = shown;
      };
      if (patch.name !== undefined) set('name', patch.name, 'name', patch.name);
      if (patch.tenantId !== undefined) set('tenant_id', patch.tenantId, 'tenantId', patch.tenantId);
      if (patch.allowedIps !== undefined) set('allowed_ips', [...patch.allowedIps], 'allowedIps', patch.allowedIps, '::text[]');
      if (patch.expiresAt !== undefined) set('expires_at', patch.expiresAt, 'expiresAt', patch.expiresAt?.toISOString() ?? null);
      if (patch.rotateAfterDays !== undefined) set('rotate_after_days', patch.rotateAfterDays, 'rotateAfterDays', patch.rotateAfterDays);
      if (patch.rpmLimit !== undefined) set('rpm_limit', patch.rpmLimit, 'rpmLimit', patch.rpmLimit);
      if (patch.rpdLimit !== undefined) set('rpd_limit', patch.rpdLimit, 'rpdLimit', patch.rpdLimit);
      if (patch.tpmLimit !== undefined) set('tpm_limit', patch.tpmLimit, 'tpmLimit', patch.tpmLimit);
      if (patch.tpdLimit !== undefined) set('tpd_limit', patch.tpdLimit, 'tpdLimit', patch.tpdLimit);
      if (update.isEmpty) return toKey(current);
      const rows = await mapErrors(
        () => tx.query<DbKey>(...update.statement('system_api_keys', actor, current.id, KEY_COLUMNS)),
        { system_api_keys_name_active_uq: () => new ConflictError('key', 'name', `a key named "${patch.name ?? ''}" already exists`) },
      );
      await insertAudit(tx, [{ keyId: current.id, action: 'updated', actor, metadata: { changes: changed } }]);
      return toKey(rows[0]!);
    });
  }

  /**
   * Replaces a key's secret. The old digest keeps working for graceMs (0 = stops at once); a previous grace still
   * running is replaced. With `replacement` the new secret is an imported key (keypool apply, when a file's `import:`
   * changed) instead of a generated one. @throws NotFoundError, StateError (revoked)
   */
  async rotate(ref: string, graceMs: number, actor: string, replacement?: { readonly importedKey: string }): Promise<IssuedKey> {
    if (!Number.isSafeInteger(graceMs) || graceMs < 0) throw new InvalidInputError('grace', 'grace must be a non-negative whole number of milliseconds');
    const plaintextKey = replacement?.importedKey ?? generateClientKey();
    const displayPrefix = replacement ? importedKeyDisplayPrefix(plaintextKey) : keyDisplayPrefix(plaintextKey);
    return this.sql.transaction(async (tx) => {
      const current = await keyByRef(tx, ref, true);
      if (current.status === 'revoked') throw new StateError('key', `key ${current.name} is revoked and cannot be rotated`);
      const rows = await tx.query<DbKey>(
        `UPDATE system_api_keys SET
           previous_key_hash = CASE WHEN $1::bigint > 0 THEN key_hash END,
           previous_key_expires_at = CASE WHEN $1::bigint > 0 THEN now() + $1::bigint * interval '1 millisecond' END,
           key_hash = $2, key_prefix = $3, last_rotated_at = now(), updated_by = $4
         WHERE id = $5 RETURNING ${KEY_COLUMNS}`,
        [graceMs, digestKey(this.pepper, plaintextKey), displayPrefix, actor, current.id],
      );
      const row = toKey(rows[0]!);
      await insertAudit(tx, [
        {
          keyId: row.id,
          action: 'rotated',
          actor,
          metadata: { graceMs, keyPrefix: row.keyPrefix, previousKeyPrefix: current.key_prefix, previousKeyExpiresAt: row.previousKeyExpiresAt?.toISOString() ?? null },
        },
      ]);
      return { row, plaintextKey };
    });
  }

  /** Whether `key` is this key's current secret (compared by digest; nothing else is stored). @throws NotFoundError */
  async digestEquals(ref: string, key: string): Promise<boolean> {
    const current = await keyByRef(this.sql, ref, false);
    const rows = await this.sql.query<{ key_hash: string }>(`SELECT key_hash FROM system_api_keys WHERE id = $1`, [current.id]);
    return rows[0]?.key_hash === digestKey(this.pepper, key);
  }

  /** Revokes a key (digest and any grace digest stop working). Idempotent: revoking again writes no audit row. @throws NotFoundError */
  async revoke(ref: string, actor: string, reason: string | null = null): Promise<SystemKeyRow> {
    return this.sql.transaction(async (tx) => {
      const current = await keyByRef(tx, ref, true);
      if (current.status === 'revoked') return toKey(current);
      const rows = await tx.query<DbKey>(
        `UPDATE system_api_keys SET status = 'revoked', revoked_at = now(), updated_by = $1 WHERE id = $2 RETURNING ${KEY_COLUMNS}`,
        [actor, current.id],
      );
      await insertAudit(tx, [{ keyId: current.id, action: 'revoked', actor, metadata: { name: current.name, reason } }]);
      return toKey(rows[0]!);
    });
  }

  /** Soft delete: the key disappears from reads and from the snapshot (presenting it gives invalid_api_key). @throws NotFoundError */
  async softDelete(ref: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const current = await keyByRef(tx, ref, true);
      await tx.query(`UPDATE system_api_keys SET deleted_at = now(), updated_by = $1 WHERE id = $2`, [actor, current.id]);
      await insertAudit(tx, [{ keyId: current.id, action: 'deleted', actor, metadata: { name: current.name } }]);
    });
  }

  /** Sets last_used_at (never moves it backwards). Does not wake snapshot holders (see the change-feed trigger). */
  async touch(keyIds: readonly string[], at: Date): Promise<void> {
    const ids = [...new Set(keyIds.filter(isUuid))];
    if (ids.length === 0) return;
    await this.sql.query(
      `UPDATE system_api_keys SET last_used_at = $2
       WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL AND (last_used_at IS NULL OR last_used_at < $2)`,
      [ids, at],
    );
  }
}

const KEY_LOOKUP: RowLookup = { entity: 'key', from: 'system_api_keys k', alias: 'k', columns: KEY_COLUMNS, byName: true };

function keyByRef(sql: SqlClient, ref: string, forUpdate: boolean): Promise<DbKey> {
  return activeRowByRef<DbKey>(sql, KEY_LOOKUP, ref, forUpdate);
}
