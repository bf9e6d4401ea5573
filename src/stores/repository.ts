// The configuration store: every read and write of keypool's durable configuration, on PGlite or PostgreSQL.
//
// Who calls it: the CLI and the admin API (operator writes, after src/validation.ts checked the input), the engine's
// buffered writer (DurableWrites: audit rows, usage, key touches, invalid accounts) and the snapshot holder
// (loadConfigData). Rules it keeps for all of them:
// - Reads see active rows only (deleted_at IS NULL); deletes are soft.
// - Every write records its actor (created_by / updated_by) and, where the operator needs a trail, appends an
//   audit row in the same transaction (key created/updated/rotated/revoked/deleted, account added/updated/
//   disabled/enabled/invalidated/deleted, mapping created/updated/deleted, config set).
// - Secrets: an upstream key is encrypted before it reaches SQL and never returned (only its last 4 characters);
//   a client key is returned once by createKey/rotateKey and stored only as its HMAC digest plus a display prefix.
// - Failures the caller can act on are typed (src/stores/errors.ts): ConflictError (unique among active rows),
//   NotFoundError (no active row for that id or name), InvalidInputError (a schema CHECK or pattern rule),
//   StateError (e.g. rotating a revoked key). Messages never contain secrets.
// References: every `ref` parameter takes an id (UUID) or, where names are unique, a name.
import { randomUUID } from 'node:crypto';
import { digestKey, keyDisplayPrefix } from '../core/apikey.js';
import { validatePattern } from '../core/priority.js';
import type { AccountStatus, MatchType, PrioritySettings, RateLimitDialect, AuthStyle, Strategy } from '../core/types.js';
import type {
  AccountRow,
  AuditEntry,
  AuditRow,
  ConfigData,
  DurableWrites,
  MappingRow,
  ProviderRow,
  StoredAccount,
  StoredKey,
  SystemKeyRow,
  UsageBucket,
} from '../ports.js';
import { generateClientKey } from '../secrets/client-key.js';
import type { Keyring } from '../secrets/keyring.js';
import { ConflictError, InvalidInputError, NotFoundError, sqlState, StateError, violatedConstraint } from './errors.js';
import type { SqlClient } from './sql-client.js';
import { addUsageCounts, type MutableUsageCounts } from './usage-counts.js';

// -------------------------------------------------------------------------------------------------
// Inputs and results
// -------------------------------------------------------------------------------------------------

export interface RepositorySecrets {
  /** Encrypts upstream keys (current version) and decrypts them for re-encryption. */
  readonly keyring: Keyring;
  /** HMAC pepper for client key digests (src/secrets/pepper.ts). */
  readonly pepper: Uint8Array;
}

export interface NewAccount {
  /** Provider slug, e.g. 'openai'. */
  readonly providerSlug: string;
  /** Unique among the provider's active accounts. */
  readonly name: string;
  /** The upstream API key, plaintext; encrypted before it is stored, never returned. */
  readonly apiKey: string;
  readonly weight?: number | undefined;
  /** Priority tier (0 first). */
  readonly tier?: number | undefined;
  readonly rpmLimit?: number | null | undefined;
  readonly tpmLimit?: number | null | undefined;
  readonly maxConcurrency?: number | null | undefined;
  readonly tags?: Readonly<Record<string, unknown>> | undefined;
  /** Start disabled (default 'active'). */
  readonly status?: 'active' | 'disabled' | undefined;
}

/** Fields to change; undefined = keep. `apiKey` replaces the upstream key (re-encrypted, last4 updated). */
export interface AccountPatch {
  readonly name?: string | undefined;
  readonly apiKey?: string | undefined;
  readonly weight?: number | undefined;
  readonly tier?: number | undefined;
  readonly rpmLimit?: number | null | undefined;
  readonly tpmLimit?: number | null | undefined;
  readonly maxConcurrency?: number | null | undefined;
  readonly tags?: Readonly<Record<string, unknown>> | undefined;
}

export interface AccountFilter {
  readonly providerSlug?: string | undefined;
  readonly status?: AccountStatus | undefined;
}

export interface ReencryptResult {
  /** The ring's current version every re-encrypted secret now uses. */
  readonly currentVersion: string;
  /** Accounts looked at (soft-deleted ones included: their ciphertext must not pin an old key either). */
  readonly total: number;
  readonly reencrypted: number;
  readonly alreadyCurrent: number;
  /** Accounts whose secret could not be decrypted (their key version is missing from the ring, or tampering). */
  readonly failed: ReadonlyArray<{ readonly id: string; readonly name: string; readonly reason: string }>;
}

export interface NewKey {
  /** Unique among active keys. */
  readonly name: string;
  readonly tenantId?: string | null | undefined;
  /** Normalised CIDRs (src/validation.ts); empty or undefined = any address. */
  readonly allowedIps?: readonly string[] | undefined;
  readonly expiresAt?: Date | null | undefined;
  readonly rotateAfterDays?: number | null | undefined;
}

export interface KeyPatch {
  readonly name?: string | undefined;
  readonly tenantId?: string | null | undefined;
  readonly allowedIps?: readonly string[] | undefined;
  readonly expiresAt?: Date | null | undefined;
  readonly rotateAfterDays?: number | null | undefined;
}

export interface KeyFilter {
  /** Only active keys whose rotate_after_days has elapsed since the last rotation (or creation) at `now`. */
  readonly dueForRotation?: boolean | undefined;
  /** Reference time for dueForRotation; default the database's now(). */
  readonly now?: Date | undefined;
  readonly status?: 'active' | 'revoked' | undefined;
  readonly tenantId?: string | undefined;
}

/** A key as created or rotated: the plaintext is returned exactly once and never stored. */
export interface IssuedKey {
  readonly row: SystemKeyRow;
  readonly plaintextKey: string;
}

export interface NewMapping {
  readonly pattern: string;
  readonly matchType: MatchType;
  /** 0 = highest. */
  readonly priority: number;
  readonly tenantId?: string | null | undefined;
  readonly tenantName?: string | null | undefined;
  readonly tenantType?: 'internal' | 'external' | null | undefined;
  readonly description?: string | null | undefined;
  readonly enabled?: boolean | undefined;
}

export type MappingPatch = { readonly [K in keyof NewMapping]?: NewMapping[K] | undefined };

/** Settings `keypool config set` accepts (`enabled` etc. without the prefix are accepted too). */
export const SETTING_NAMES = ['priority.enabled', 'priority.default_priority', 'priority.cache_ttl_sec'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

export interface AuditFilter {
  readonly keyId?: string | undefined;
  readonly action?: AuditRow['action'] | undefined;
  /** Inclusive lower bound on created_at. */
  readonly since?: Date | undefined;
  /** Page size, 1..1000 (default 100). */
  readonly limit?: number | undefined;
  /** nextCursor of the previous page. */
  readonly cursor?: string | undefined;
}

export interface AuditPage {
  /** Newest first. */
  readonly rows: readonly AuditRow[];
  /** Pass as `cursor` for the next (older) page; null when this was the last. */
  readonly nextCursor: string | null;
}

export interface UsageQuery {
  readonly accountId?: string | undefined;
  /** Inclusive. */
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
}

// -------------------------------------------------------------------------------------------------
// Repository
// -------------------------------------------------------------------------------------------------

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BATCH_ROWS = 1_000;

/** Shared plumbing of the entity stores below. */
abstract class StorePart {
  constructor(
    protected readonly sql: SqlClient,
    protected readonly keyring: Keyring,
    protected readonly pepper: Uint8Array,
  ) {}
}

/** Providers: the upstream API families (seeded by sql/seed/providers.sql). */
export class ProviderStore extends StorePart {
  async list(): Promise<ProviderRow[]> {
    const rows = await this.sql.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE deleted_at IS NULL ORDER BY slug`);
    return rows.map(toProvider);
  }

  /** @throws NotFoundError */
  async getBySlug(slug: string): Promise<ProviderRow> {
    return providerBySlug(this.sql, slug);
  }
}

/** Upstream provider accounts (pooled credentials). */
export class AccountStore extends StorePart {
  /** Adds an account; the secret is encrypted under the ring's current version. @throws NotFoundError (provider), ConflictError (name) */
  async create(input: NewAccount, actor: string): Promise<AccountRow> {
    return this.sql.transaction(async (tx) => {
      const provider = await providerBySlug(tx, input.providerSlug);
      const id = randomUUID();
      const encrypted = this.keyring.encrypt(input.apiKey, id);
      const rows = await mapErrors(
        () =>
          tx.query<DbAccount>(
            `INSERT INTO provider_accounts (id, provider_id, name, encrypted_key, key_version, key_last4, weight, priority_tier,
                rpm_limit, tpm_limit, max_concurrency, status, tags, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $14)
             RETURNING *, $15::text AS provider_slug`,
            [
              id,
              provider.id,
              input.name,
              encrypted.ciphertext,
              encrypted.keyVersion,
              last4(input.apiKey),
              input.weight ?? 1,
              input.tier ?? 0,
              input.rpmLimit ?? null,
              input.tpmLimit ?? null,
              input.maxConcurrency ?? null,
              input.status ?? 'active',
              JSON.stringify(input.tags ?? {}),
              actor,
              provider.slug,
            ],
          ),
        { provider_accounts_name_active_uq: () => new ConflictError('account', 'name', `account "${input.name}" already exists for provider ${provider.slug}`) },
      );
      const account = toAccount(rows[0]!);
      await insertAudit(tx, [
        { keyId: null, action: 'account_created', actor, metadata: { accountId: id, provider: provider.slug, name: input.name, status: account.status } },
      ]);
      return account;
    });
  }

  async list(filter: AccountFilter = {}): Promise<AccountRow[]> {
    const where = ['a.deleted_at IS NULL', 'p.deleted_at IS NULL'];
    const params: unknown[] = [];
    if (filter.providerSlug !== undefined) {
      params.push(filter.providerSlug);
      where.push(`p.slug = $${params.length}`);
    }
    if (filter.status !== undefined) {
      params.push(filter.status);
      where.push(`a.status = $${params.length}`);
    }
    const rows = await this.sql.query<DbAccount>(
      `SELECT ${ACCOUNT_COLUMNS} FROM provider_accounts a JOIN providers p ON p.id = a.provider_id
       WHERE ${where.join(' AND ')} ORDER BY p.slug, a.priority_tier, a.name`,
      params,
    );
    return rows.map(toAccount);
  }

  /** By id, or by name when that name is unique among active accounts. @throws NotFoundError, ConflictError (ambiguous name) */
  async get(ref: string): Promise<AccountRow> {
    return toAccount(await accountByRef(this.sql, ref, false));
  }

  /** @throws NotFoundError, ConflictError (name) */
  async update(ref: string, patch: AccountPatch, actor: string): Promise<AccountRow> {
    return this.sql.transaction(async (tx) => {
      const current = await accountByRef(tx, ref, true);
      const update = new UpdateBuilder();
      const changed: string[] = [];
      const set = (column: string, value: unknown, field: string, cast = ''): void => {
        update.set(column, value, cast);
        changed.push(field);
      };
      if (patch.name !== undefined) set('name', patch.name, 'name');
      if (patch.weight !== undefined) set('weight', patch.weight, 'weight');
      if (patch.tier !== undefined) set('priority_tier', patch.tier, 'tier');
      if (patch.rpmLimit !== undefined) set('rpm_limit', patch.rpmLimit, 'rpmLimit');
      if (patch.tpmLimit !== undefined) set('tpm_limit', patch.tpmLimit, 'tpmLimit');
      if (patch.maxConcurrency !== undefined) set('max_concurrency', patch.maxConcurrency, 'maxConcurrency');
      if (patch.tags !== undefined) set('tags', JSON.stringify(patch.tags), 'tags', '::text::jsonb');
      if (patch.apiKey !== undefined) {
        const encrypted = this.keyring.encrypt(patch.apiKey, current.id);
        set('encrypted_key', encrypted.ciphertext, 'apiKey');
        update.set('key_version', encrypted.keyVersion);
        update.set('key_last4', last4(patch.apiKey));
      }
      if (update.isEmpty) return toAccount(current);
      await mapErrors(
        () => tx.query(...update.statement('provider_accounts', actor, current.id)),
        {
          provider_accounts_name_active_uq: () =>
            new ConflictError('account', 'name', `account "${patch.name ?? ''}" already exists for provider ${current.provider_slug}`),
        },
      );
      await insertAudit(tx, [
        { keyId: null, action: 'account_updated', actor, metadata: { accountId: current.id, provider: current.provider_slug, fields: changed } },
      ]);
      return toAccount(await accountByRef(tx, current.id, false));
    });
  }

  /**
   * Enables, disables or invalidates an account (audited as account_enabled / account_disabled / account_invalidated).
   * Enabling clears the reason. Setting the status it already has changes nothing and writes no audit row.
   * @throws NotFoundError
   */
  async setStatus(ref: string, status: AccountStatus, reason: string | null, actor: string): Promise<AccountRow> {
    return this.sql.transaction(async (tx) => {
      const current = await accountByRef(tx, ref, true);
      if (current.status === status && (status === 'active' || reason === null || reason === current.disabled_reason)) {
        return toAccount(current);
      }
      await tx.query(`UPDATE provider_accounts SET status = $1, disabled_reason = $2, updated_by = $3 WHERE id = $4`, [
        status,
        status === 'active' ? null : reason,
        actor,
        current.id,
      ]);
      const action = status === 'active' ? 'account_enabled' : status === 'disabled' ? 'account_disabled' : 'account_invalidated';
      await insertAudit(tx, [
        { keyId: null, action, actor, metadata: { accountId: current.id, provider: current.provider_slug, name: current.name, reason, previous: current.status } },
      ]);
      return toAccount(await accountByRef(tx, current.id, false));
    });
  }

  /** Soft delete (audited as account_deleted). @throws NotFoundError */
  async softDelete(ref: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const current = await accountByRef(tx, ref, true);
      await tx.query(`UPDATE provider_accounts SET deleted_at = now(), updated_by = $1 WHERE id = $2`, [actor, current.id]);
      await insertAudit(tx, [
        { keyId: null, action: 'account_deleted', actor, metadata: { accountId: current.id, provider: current.provider_slug, name: current.name } },
      ]);
    });
  }

  /** Re-encrypts every account secret not under the ring's current version (one transaction). */
  async reencryptAll(actor: string): Promise<ReencryptResult> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ id: string; name: string; encrypted_key: string; key_version: string; deleted_at: Date | null }>(
        `SELECT id, name, encrypted_key, key_version, deleted_at FROM provider_accounts ORDER BY id FOR UPDATE`,
      );
      let reencrypted = 0;
      let alreadyCurrent = 0;
      const failed: Array<{ id: string; name: string; reason: string }> = [];
      for (const row of rows) {
        const secret = { ciphertext: row.encrypted_key, keyVersion: row.key_version };
        if (this.keyring.isCurrent(secret)) {
          alreadyCurrent++;
          continue;
        }
        let next;
        try {
          next = this.keyring.reencrypt(secret, row.id);
        } catch (error) {
          failed.push({ id: row.id, name: row.name, reason: (error as Error).message });
          continue;
        }
        await tx.query(`UPDATE provider_accounts SET encrypted_key = $1, key_version = $2, updated_by = $3 WHERE id = $4`, [
          next.ciphertext,
          next.keyVersion,
          actor,
          row.id,
        ]);
        if (row.deleted_at === null) {
          await insertAudit(tx, [
            { keyId: null, action: 'account_updated', actor, metadata: { accountId: row.id, fields: ['keyVersion'], from: row.key_version, to: next.keyVersion } },
          ]);
        }
        reencrypted++;
      }
      return { currentVersion: this.keyring.currentVersion, total: rows.length, reencrypted, alreadyCurrent, failed };
    });
  }

  /** Marks an active account invalid (upstream said 401/403) with an account_invalidated audit row; a no-op otherwise. */
  async markInvalid(accountId: string, reason: string, actor: string): Promise<void> {
    if (!UUID_PATTERN.test(accountId)) return;
    await this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ id: string; name: string; provider_slug: string }>(
        `UPDATE provider_accounts a SET status = 'invalid', disabled_reason = $2, updated_by = $3
         FROM providers p WHERE a.id = $1 AND p.id = a.provider_id AND a.deleted_at IS NULL AND a.status = 'active'
         RETURNING a.id, a.name, p.slug AS provider_slug`,
        [accountId, reason, actor],
      );
      const row = rows[0];
      if (!row) return;
      await insertAudit(tx, [
        { keyId: null, action: 'account_invalidated', actor, metadata: { accountId: row.id, provider: row.provider_slug, name: row.name, reason } },
      ]);
    });
  }
}

/** System (client) API keys. */
export class KeyStore extends StorePart {
  /** Issues a key: returns the plaintext once; stores its digest and display prefix. @throws ConflictError (name) */
  async create(input: NewKey, actor: string): Promise<IssuedKey> {
    const plaintextKey = generateClientKey();
    return this.sql.transaction(async (tx) => {
      const rows = await mapErrors(
        () =>
          tx.query<DbKey>(
            `INSERT INTO system_api_keys (name, tenant_id, key_prefix, key_hash, expires_at, allowed_ips, rotate_after_days,
                created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6::text[], $7, $8, $8) RETURNING ${KEY_COLUMNS}`,
            [
              input.name,
              input.tenantId ?? null,
              keyDisplayPrefix(plaintextKey),
              digestKey(this.pepper, plaintextKey),
              input.expiresAt ?? null,
              [...(input.allowedIps ?? [])],
              input.rotateAfterDays ?? null,
              actor,
            ],
          ),
        { system_api_keys_name_active_uq: () => new ConflictError('key', 'name', `a key named "${input.name}" already exists`) },
      );
      const row = toKey(rows[0]!);
      await insertAudit(tx, [
        {
          keyId: row.id,
          action: 'created',
          actor,
          metadata: { name: row.name, tenantId: row.tenantId, keyPrefix: row.keyPrefix, allowedIps: row.allowedIps, expiresAt: row.expiresAt?.toISOString() ?? null },
        },
      ]);
      return { row, plaintextKey };
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
    const rows = await this.sql.query<DbKey>(`SELECT ${KEY_COLUMNS} FROM system_api_keys WHERE ${where.join(' AND ')} ORDER BY name`, params);
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
   * running is replaced. @throws NotFoundError, StateError (revoked)
   */
  async rotate(ref: string, graceMs: number, actor: string): Promise<IssuedKey> {
    if (!Number.isSafeInteger(graceMs) || graceMs < 0) throw new InvalidInputError('grace', 'grace must be a non-negative whole number of milliseconds');
    const plaintextKey = generateClientKey();
    return this.sql.transaction(async (tx) => {
      const current = await keyByRef(tx, ref, true);
      if (current.status === 'revoked') throw new StateError('key', `key ${current.name} is revoked and cannot be rotated`);
      const rows = await tx.query<DbKey>(
        `UPDATE system_api_keys SET
           previous_key_hash = CASE WHEN $1::bigint > 0 THEN key_hash END,
           previous_key_expires_at = CASE WHEN $1::bigint > 0 THEN now() + $1::bigint * interval '1 millisecond' END,
           key_hash = $2, key_prefix = $3, last_rotated_at = now(), updated_by = $4
         WHERE id = $5 RETURNING ${KEY_COLUMNS}`,
        [graceMs, digestKey(this.pepper, plaintextKey), keyDisplayPrefix(plaintextKey), actor, current.id],
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
    const ids = [...new Set(keyIds.filter((id) => UUID_PATTERN.test(id)))];
    if (ids.length === 0) return;
    await this.sql.query(
      `UPDATE system_api_keys SET last_used_at = $2
       WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL AND (last_used_at IS NULL OR last_used_at < $2)`,
      [ids, at],
    );
  }
}

/** Priority mappings: presented key pattern -> priority and tenant. */
export class MappingStore extends StorePart {
  /** @throws InvalidInputError (pattern), ConflictError (same match type and pattern) */
  async create(input: NewMapping, actor: string): Promise<MappingRow> {
    checkPattern(input.matchType, input.pattern);
    return this.sql.transaction(async (tx) => {
      const rows = await mapErrors(
        () =>
          tx.query<DbMapping>(
            `INSERT INTO api_key_priority_mappings (pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description,
                enabled, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING ${MAPPING_COLUMNS}`,
            [
              input.pattern,
              input.matchType,
              input.priority,
              input.tenantId ?? null,
              input.tenantName ?? null,
              input.tenantType ?? null,
              input.description ?? null,
              input.enabled ?? true,
              actor,
            ],
          ),
        { api_key_priority_mappings_pattern_active_uq: () => mappingConflict(input.matchType, input.pattern) },
      );
      const row = toMapping(rows[0]!);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_created', actor, metadata: mappingAudit(row) }]);
      return row;
    });
  }

  /** Every active mapping, enabled or not, in created order. */
  async list(): Promise<MappingRow[]> {
    const rows = await this.sql.query<DbMapping>(
      `SELECT ${MAPPING_COLUMNS} FROM api_key_priority_mappings WHERE deleted_at IS NULL ORDER BY created_at, id`,
    );
    return rows.map(toMapping);
  }

  /** @throws NotFoundError */
  async get(id: string): Promise<MappingRow> {
    return toMapping(await mappingById(this.sql, id, false));
  }

  /** @throws NotFoundError, InvalidInputError (pattern), ConflictError */
  async update(id: string, patch: MappingPatch, actor: string): Promise<MappingRow> {
    return this.sql.transaction(async (tx) => {
      const current = await mappingById(tx, id, true);
      const matchType = patch.matchType ?? current.match_type;
      const pattern = patch.pattern ?? current.pattern;
      if (patch.matchType !== undefined || patch.pattern !== undefined) checkPattern(matchType, pattern);
      const columns: Array<[keyof NewMapping, string]> = [
        ['pattern', 'pattern'],
        ['matchType', 'match_type'],
        ['priority', 'priority'],
        ['tenantId', 'tenant_id'],
        ['tenantName', 'tenant_name'],
        ['tenantType', 'tenant_type'],
        ['description', 'description'],
        ['enabled', 'enabled'],
      ];
      const update = new UpdateBuilder();
      const fields: string[] = [];
      for (const [field, column] of columns) {
        const value = patch[field];
        if (value === undefined) continue;
        update.set(column, value);
        fields.push(field);
      }
      if (update.isEmpty) return toMapping(current);
      const rows = await mapErrors(
        () => tx.query<DbMapping>(...update.statement('api_key_priority_mappings', actor, current.id, MAPPING_COLUMNS)),
        { api_key_priority_mappings_pattern_active_uq: () => mappingConflict(matchType, pattern) },
      );
      const row = toMapping(rows[0]!);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_updated', actor, metadata: { ...mappingAudit(row), fields } }]);
      return row;
    });
  }

  /** Soft delete. @throws NotFoundError */
  async softDelete(id: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const current = await mappingById(tx, id, true);
      await tx.query(`UPDATE api_key_priority_mappings SET deleted_at = now(), updated_by = $1 WHERE id = $2`, [actor, current.id]);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_deleted', actor, metadata: mappingAudit(toMapping(current)) }]);
    });
  }
}

/** Priority settings (api_key_priority_config). */
export class SettingStore extends StorePart {
  async get(): Promise<PrioritySettings> {
    return readSettings(this.sql);
  }

  /**
   * Sets one setting (`priority.enabled` true/false, `priority.default_priority` 0..1000, `priority.cache_ttl_sec`
   * 0..86400); audited as config_set. @throws InvalidInputError (unknown name or bad value)
   */
  async set(name: string, value: boolean | number, actor: string): Promise<PrioritySettings> {
    const key = settingKey(name);
    checkSettingValue(key, value);
    return this.sql.transaction(async (tx) => {
      const before = await readSettings(tx);
      const json = JSON.stringify(value);
      const updated = await tx.query(
        `UPDATE api_key_priority_config SET value = $1::text::jsonb, updated_by = $2 WHERE key = $3 AND deleted_at IS NULL RETURNING id`,
        [json, actor, key],
      );
      if (updated.length === 0) {
        await tx.query(`INSERT INTO api_key_priority_config (key, value, created_by, updated_by) VALUES ($1, $2::text::jsonb, $3, $3)`, [key, json, actor]);
      }
      const previous = key === 'enabled' ? before.enabled : key === 'default_priority' ? before.defaultPriority : before.cacheTtlSec;
      await insertAudit(tx, [{ keyId: null, action: 'config_set', actor, metadata: { name: `priority.${key}`, value, previous } }]);
      return readSettings(tx);
    });
  }
}

/** The append-only audit log. */
export class AuditStore extends StorePart {
  /** Appends rows (request-path denials, ...). Entries with a keyId that is not a UUID are stored with key_id NULL. */
  async append(entries: readonly AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await insertAudit(this.sql, entries);
  }

  /** Newest first, keyset-paginated. */
  async list(filter: AuditFilter = {}): Promise<AuditPage> {
    const limit = Math.min(Math.max(Math.trunc(filter.limit ?? 100), 1), 1000);
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.keyId !== undefined) {
      if (!UUID_PATTERN.test(filter.keyId)) return { rows: [], nextCursor: null };
      params.push(filter.keyId);
      where.push(`key_id = $${params.length}`);
    }
    if (filter.action !== undefined) {
      params.push(filter.action);
      where.push(`action = $${params.length}`);
    }
    if (filter.since !== undefined) {
      params.push(filter.since);
      where.push(`created_at >= $${params.length}`);
    }
    if (filter.cursor !== undefined) {
      if (!UUID_PATTERN.test(filter.cursor)) throw new InvalidInputError('cursor', 'cursor is not one this API returned');
      params.push(filter.cursor);
      where.push(`(created_at, id) < (SELECT created_at, id FROM api_key_audit_logs WHERE id = $${params.length})`);
    }
    params.push(limit + 1);
    const rows = await this.sql.query<DbAudit>(
      `SELECT id, key_id, action, actor, client_ip, metadata, occurrences, created_at FROM api_key_audit_logs
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, limit).map(toAudit);
    return { rows: page, nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
  }

  /**
   * Deletes rows created before `before` through keypool_prune_audit() (migration 0003: the one path the append-only
   * trigger lets a DELETE through), which also records an `audit_pruned` row by `actor`. Returns the rows deleted.
   */
  async prune(before: Date, actor: string): Promise<number> {
    const [row] = await this.sql.query<{ deleted: string | number }>('SELECT keypool_prune_audit($1::timestamptz, $2) AS deleted', [before, actor]);
    return Number(row?.deleted ?? 0);
  }
}

/** Per-account usage per minute. */
export class UsageStore extends StorePart {
  /**
   * Additive upsert per (account, minute): safe for any number of replicas flushing the same bucket. Buckets are
   * truncated to the minute and merged before writing; buckets of unknown accounts are dropped.
   */
  async add(buckets: readonly UsageBucket[]): Promise<void> {
    const merged = mergeBuckets(buckets);
    for (let start = 0; start < merged.length; start += MAX_BATCH_ROWS) {
      const chunk = merged.slice(start, start + MAX_BATCH_ROWS);
      const params: unknown[] = [];
      const values = chunk.map((bucket) => {
        params.push(
          bucket.accountId,
          bucket.bucketStart,
          bucket.requests,
          bucket.successes,
          bucket.rateLimited,
          bucket.clientErrors,
          bucket.serverErrors,
          bucket.inputTokens,
          bucket.outputTokens,
          bucket.latencyMsSum,
        );
        const n = params.length - 10;
        return `($${n + 1}::uuid, $${n + 2}::timestamptz, $${n + 3}::bigint, $${n + 4}::bigint, $${n + 5}::bigint, $${n + 6}::bigint,
                 $${n + 7}::bigint, $${n + 8}::bigint, $${n + 9}::bigint, $${n + 10}::bigint)`;
      });
      await this.sql.query(
        `INSERT INTO account_usage_stats AS s (account_id, bucket_start, requests, successes, rate_limited, client_errors,
            server_errors, input_tokens, output_tokens, latency_ms_sum)
         SELECT v.* FROM (VALUES ${values.join(', ')}) AS v (account_id, bucket_start, requests, successes, rate_limited,
            client_errors, server_errors, input_tokens, output_tokens, latency_ms_sum)
         JOIN provider_accounts a ON a.id = v.account_id
         ON CONFLICT (account_id, bucket_start) DO UPDATE SET
           requests = s.requests + EXCLUDED.requests,
           successes = s.successes + EXCLUDED.successes,
           rate_limited = s.rate_limited + EXCLUDED.rate_limited,
           client_errors = s.client_errors + EXCLUDED.client_errors,
           server_errors = s.server_errors + EXCLUDED.server_errors,
           input_tokens = s.input_tokens + EXCLUDED.input_tokens,
           output_tokens = s.output_tokens + EXCLUDED.output_tokens,
           latency_ms_sum = s.latency_ms_sum + EXCLUDED.latency_ms_sum`,
        params,
      );
    }
  }

  /** Usage buckets in [from, to), oldest first. */
  async query(query: UsageQuery): Promise<UsageBucket[]> {
    const params: unknown[] = [query.from, query.to];
    let accountFilter = '';
    if (query.accountId !== undefined) {
      if (!UUID_PATTERN.test(query.accountId)) return [];
      params.push(query.accountId);
      accountFilter = `AND account_id = $3`;
    }
    const rows = await this.sql.query<DbUsage>(
      `SELECT account_id, bucket_start, requests, successes, rate_limited, client_errors, server_errors, input_tokens,
              output_tokens, latency_ms_sum
       FROM account_usage_stats WHERE bucket_start >= $1 AND bucket_start < $2 ${accountFilter}
       ORDER BY bucket_start, account_id`,
      params,
    );
    return rows.map(toUsage);
  }

  /** Deletes the minute buckets that start before `before` (usage counters are not audit: no trigger guards them). */
  async prune(before: Date): Promise<number> {
    const rows = await this.sql.query<{ n: string | number }>(
      'WITH gone AS (DELETE FROM account_usage_stats WHERE bucket_start < $1 RETURNING 1) SELECT count(*) AS n FROM gone',
      [before],
    );
    return Number(rows[0]?.n ?? 0);
  }
}

/**
 * The configuration store, grouped by entity: `repo.keys.create(...)`, `repo.accounts.setStatus(...)`, ...
 * Implements DurableWrites (the request path's buffered writes) and loads the snapshot's ConfigData.
 */
export class ConfigRepository implements DurableWrites {
  readonly providers: ProviderStore;
  readonly accounts: AccountStore;
  readonly keys: KeyStore;
  readonly mappings: MappingStore;
  readonly settings: SettingStore;
  readonly audit: AuditStore;
  readonly usage: UsageStore;
  readonly #sql: SqlClient;

  constructor(sql: SqlClient, secrets: RepositorySecrets) {
    this.#sql = sql;
    const parts = [sql, secrets.keyring, secrets.pepper] as const;
    this.providers = new ProviderStore(...parts);
    this.accounts = new AccountStore(...parts);
    this.keys = new KeyStore(...parts);
    this.mappings = new MappingStore(...parts);
    this.settings = new SettingStore(...parts);
    this.audit = new AuditStore(...parts);
    this.usage = new UsageStore(...parts);
  }

  // DurableWrites: the engine's buffered writer calls these; each is idempotent or additive.

  appendAudit(entries: readonly AuditEntry[]): Promise<void> {
    return this.audit.append(entries);
  }

  markAccountInvalid(accountId: string, reason: string, actor: string): Promise<void> {
    return this.accounts.markInvalid(accountId, reason, actor);
  }

  touchKeys(keyIds: readonly string[], at: Date): Promise<void> {
    return this.keys.touch(keyIds, at);
  }

  addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    return this.usage.add(buckets);
  }

  /** Everything the compiled snapshot needs, read in one repeatable-read, read-only transaction. */
  async loadConfigData(): Promise<ConfigData> {
    return this.#sql.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const [head] = await tx.query<{ read_at: Date; version: number }>(
        `SELECT now() AS read_at, COALESCE((SELECT version FROM config_version WHERE id = 1), 0)::bigint AS version`,
      );
      const providers = await tx.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE deleted_at IS NULL ORDER BY slug`);
      const accounts = await tx.query<DbAccount & { encrypted_key: string }>(
        `SELECT ${ACCOUNT_COLUMNS}, a.encrypted_key FROM provider_accounts a JOIN providers p ON p.id = a.provider_id
         WHERE a.deleted_at IS NULL AND p.deleted_at IS NULL ORDER BY p.slug, a.priority_tier, a.name`,
      );
      const keys = await tx.query<DbKey & { key_hash: string; previous_key_hash: string | null }>(
        `SELECT ${KEY_COLUMNS}, key_hash, previous_key_hash FROM system_api_keys WHERE deleted_at IS NULL ORDER BY name`,
      );
      const mappings = await tx.query<DbMapping>(
        `SELECT ${MAPPING_COLUMNS} FROM api_key_priority_mappings WHERE deleted_at IS NULL ORDER BY created_at, id`,
      );
      const settings = await readSettings(tx);
      return {
        readAt: head!.read_at,
        configVersion: Number(head!.version),
        providers: providers.map(toProvider),
        accounts: accounts.map((row): StoredAccount => ({ ...toAccount(row), encryptedKey: row.encrypted_key })),
        keys: keys.map((row): StoredKey => ({ ...toKey(row), keyHash: row.key_hash, previousKeyHash: row.previous_key_hash })),
        mappings: mappings.map(toMapping),
        settings,
      };
    });
  }

  /** The config_version counter (bumped by every configuration write): a cheap "did anything change?" probe. */
  async configVersion(): Promise<number> {
    const rows = await this.#sql.query<{ version: number }>(`SELECT version FROM config_version WHERE id = 1`);
    return Number(rows[0]?.version ?? 0);
  }
}

/** Collects `column = $n` assignments for one row's UPDATE (updated_by and the id come last). */
class UpdateBuilder {
  private readonly assignments: string[] = [];
  private readonly params: unknown[] = [];

  get isEmpty(): boolean {
    return this.assignments.length === 0;
  }

  set(column: string, value: unknown, cast = ''): void {
    this.params.push(value);
    this.assignments.push(`${column} = $${this.params.length}${cast}`);
  }

  /** The statement and its parameters, for `sql.query(...statement)`. */
  statement(table: string, actor: string, id: string, returning?: string): [string, unknown[]] {
    const params = [...this.params, actor, id];
    const text = `UPDATE ${table} SET ${this.assignments.join(', ')}, updated_by = $${params.length - 1} WHERE id = $${params.length}`;
    return [returning === undefined ? text : `${text} RETURNING ${returning}`, params];
  }
}

// -------------------------------------------------------------------------------------------------
// Row mapping
// -------------------------------------------------------------------------------------------------

const PROVIDER_COLUMNS = 'id, slug, display_name, auth_style, rate_limit_dialect, default_strategy';
const ACCOUNT_COLUMNS = `a.id, a.provider_id, p.slug AS provider_slug, a.name, a.key_last4, a.key_version, a.weight,
  a.priority_tier, a.rpm_limit, a.tpm_limit, a.max_concurrency, a.status, a.disabled_reason, a.tags, a.created_at, a.updated_at`;
const KEY_COLUMNS = `id, name, tenant_id, key_prefix, status, expires_at, allowed_ips, rotate_after_days, last_rotated_at,
  previous_key_expires_at, last_used_at, created_at, updated_at`;
const MAPPING_COLUMNS = 'id, pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description, enabled, created_at';

interface DbProvider {
  id: string;
  slug: string;
  display_name: string;
  auth_style: AuthStyle;
  rate_limit_dialect: RateLimitDialect;
  default_strategy: Strategy;
}

interface DbAccount {
  id: string;
  provider_id: string;
  provider_slug: string;
  name: string;
  key_last4: string;
  key_version: string;
  weight: number;
  priority_tier: number;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_concurrency: number | null;
  status: AccountStatus;
  disabled_reason: string | null;
  tags: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

interface DbKey {
  id: string;
  name: string;
  tenant_id: string | null;
  key_prefix: string;
  status: 'active' | 'revoked';
  expires_at: Date | null;
  allowed_ips: string[];
  rotate_after_days: number | null;
  last_rotated_at: Date | null;
  previous_key_expires_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

interface DbMapping {
  id: string;
  pattern: string;
  match_type: MatchType;
  priority: number;
  tenant_id: string | null;
  tenant_name: string | null;
  tenant_type: 'internal' | 'external' | null;
  description: string | null;
  enabled: boolean;
  created_at: Date;
}

interface DbAudit {
  id: string;
  key_id: string | null;
  action: AuditRow['action'];
  actor: string;
  client_ip: string | null;
  metadata: Record<string, unknown>;
  occurrences: number;
  created_at: Date;
}

interface DbUsage {
  account_id: string;
  bucket_start: Date;
  requests: number;
  successes: number;
  rate_limited: number;
  client_errors: number;
  server_errors: number;
  input_tokens: number;
  output_tokens: number;
  latency_ms_sum: number;
}

function toProvider(row: DbProvider): ProviderRow {
  return {
    id: row.id,
    slug: row.slug,
    displayName: row.display_name,
    authStyle: row.auth_style,
    rateLimitDialect: row.rate_limit_dialect,
    defaultStrategy: row.default_strategy,
  };
}

function toAccount(row: DbAccount): AccountRow {
  return {
    id: row.id,
    providerId: row.provider_id,
    providerSlug: row.provider_slug,
    name: row.name,
    keyLast4: row.key_last4,
    keyVersion: row.key_version,
    weight: row.weight,
    tier: row.priority_tier,
    rpmLimit: row.rpm_limit,
    tpmLimit: row.tpm_limit,
    maxConcurrency: row.max_concurrency,
    status: row.status,
    disabledReason: row.disabled_reason,
    tags: row.tags ?? {},
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toKey(row: DbKey): SystemKeyRow {
  return {
    id: row.id,
    name: row.name,
    tenantId: row.tenant_id,
    keyPrefix: row.key_prefix,
    status: row.status,
    expiresAt: row.expires_at,
    allowedIps: row.allowed_ips ?? [],
    rotateAfterDays: row.rotate_after_days,
    lastRotatedAt: row.last_rotated_at,
    previousKeyExpiresAt: row.previous_key_expires_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toMapping(row: DbMapping): MappingRow {
  return {
    id: row.id,
    pattern: row.pattern,
    matchType: row.match_type,
    priority: row.priority,
    tenantId: row.tenant_id,
    tenantName: row.tenant_name,
    tenantType: row.tenant_type,
    description: row.description,
    enabled: row.enabled,
    createdAt: row.created_at,
  };
}

function toAudit(row: DbAudit): AuditRow {
  return {
    id: row.id,
    keyId: row.key_id,
    action: row.action,
    actor: row.actor,
    clientIp: row.client_ip,
    metadata: row.metadata ?? {},
    occurrences: Number(row.occurrences ?? 1),
    createdAt: row.created_at,
  };
}

function toUsage(row: DbUsage): UsageBucket {
  return {
    accountId: row.account_id,
    bucketStart: row.bucket_start,
    requests: Number(row.requests),
    successes: Number(row.successes),
    rateLimited: Number(row.rate_limited),
    clientErrors: Number(row.client_errors),
    serverErrors: Number(row.server_errors),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    latencyMsSum: Number(row.latency_ms_sum),
  };
}

// -------------------------------------------------------------------------------------------------
// Lookups and helpers (take the client or transaction to run on)
// -------------------------------------------------------------------------------------------------

async function providerBySlug(sql: SqlClient, slug: string): Promise<ProviderRow> {
  const rows = await sql.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE slug = $1 AND deleted_at IS NULL`, [slug]);
  const row = rows[0];
  if (!row) throw new NotFoundError('provider', slug);
  return toProvider(row);
}

async function accountByRef(sql: SqlClient, ref: string, forUpdate: boolean): Promise<DbAccount> {
  const byId = UUID_PATTERN.test(ref);
  const rows = await sql.query<DbAccount>(
    `SELECT ${ACCOUNT_COLUMNS} FROM provider_accounts a JOIN providers p ON p.id = a.provider_id
     WHERE ${byId ? 'a.id = $1' : 'a.name = $1'} AND a.deleted_at IS NULL AND p.deleted_at IS NULL
     ORDER BY p.slug LIMIT 2 ${forUpdate ? 'FOR UPDATE OF a' : ''}`,
    [ref],
  );
  if (rows.length === 0) throw new NotFoundError('account', ref);
  if (rows.length > 1) {
    throw new ConflictError('account', 'name', `more than one provider has an account named "${ref}": use its id`);
  }
  return rows[0]!;
}

async function keyByRef(sql: SqlClient, ref: string, forUpdate: boolean): Promise<DbKey> {
  const byId = UUID_PATTERN.test(ref);
  const rows = await sql.query<DbKey>(
    `SELECT ${KEY_COLUMNS} FROM system_api_keys WHERE ${byId ? 'id = $1' : 'name = $1'} AND deleted_at IS NULL
     ${forUpdate ? 'FOR UPDATE' : ''}`,
    [ref],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError('key', ref);
  return row;
}

async function mappingById(sql: SqlClient, id: string, forUpdate: boolean): Promise<DbMapping> {
  if (!UUID_PATTERN.test(id)) throw new NotFoundError('mapping', id);
  const rows = await sql.query<DbMapping>(
    `SELECT ${MAPPING_COLUMNS} FROM api_key_priority_mappings WHERE id = $1 AND deleted_at IS NULL ${forUpdate ? 'FOR UPDATE' : ''}`,
    [id],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError('mapping', id);
  return row;
}

async function readSettings(sql: SqlClient): Promise<PrioritySettings> {
  const rows = await sql.query<{ key: string; value: unknown }>(`SELECT key, value FROM api_key_priority_config WHERE deleted_at IS NULL`);
  const values = new Map(rows.map((row) => [row.key, row.value]));
  const enabled = values.get('enabled');
  const defaultPriority = values.get('default_priority');
  const cacheTtlSec = values.get('cache_ttl_sec');
  return {
    enabled: typeof enabled === 'boolean' ? enabled : false,
    defaultPriority: typeof defaultPriority === 'number' ? defaultPriority : 7,
    cacheTtlSec: typeof cacheTtlSec === 'number' ? cacheTtlSec : 300,
  };
}

type AuditInsert = Omit<AuditEntry, 'keyId'> & { readonly keyId: string | null };

async function insertAudit(sql: SqlClient, entries: readonly AuditInsert[]): Promise<void> {
  for (let start = 0; start < entries.length; start += MAX_BATCH_ROWS) {
    const chunk = entries.slice(start, start + MAX_BATCH_ROWS);
    const params: unknown[] = [];
    const values = chunk.map((entry) => {
      params.push(
        entry.keyId !== null && UUID_PATTERN.test(entry.keyId) ? entry.keyId : null,
        entry.action,
        entry.actor,
        entry.clientIp ?? null,
        JSON.stringify(entry.metadata ?? {}),
        entry.at ?? null,
        entry.occurrences ?? 1,
      );
      const n = params.length - 7;
      return `($${n + 1}::uuid, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}::text::jsonb, COALESCE($${n + 6}::timestamptz, now()), $${n + 7}::integer)`;
    });
    await sql.query(
      `INSERT INTO api_key_audit_logs (key_id, action, actor, client_ip, metadata, created_at, occurrences) VALUES ${values.join(', ')}`,
      params,
    );
  }
}

type MergedBucket = UsageBucket & MutableUsageCounts;

function mergeBuckets(buckets: readonly UsageBucket[]): MergedBucket[] {
  const merged = new Map<string, MergedBucket>();
  for (const bucket of buckets) {
    if (!UUID_PATTERN.test(bucket.accountId)) continue;
    const startMs = Math.floor(bucket.bucketStart.getTime() / 60_000) * 60_000;
    const id = `${bucket.accountId.toLowerCase()}|${startMs}`;
    const into = merged.get(id);
    if (!into) {
      merged.set(id, { ...bucket, accountId: bucket.accountId.toLowerCase(), bucketStart: new Date(startMs) });
      continue;
    }
    addUsageCounts(into, bucket);
  }
  return [...merged.values()];
}

function checkPattern(matchType: MatchType, pattern: string): void {
  const problem = validatePattern(matchType, pattern);
  if (problem !== null) throw new InvalidInputError('pattern', problem);
}

function mappingConflict(matchType: MatchType, pattern: string): ConflictError {
  return new ConflictError('mapping', 'pattern', `a ${matchType} mapping for this pattern already exists`);
}

function mappingAudit(row: MappingRow): Record<string, unknown> {
  return {
    mappingId: row.id,
    matchType: row.matchType,
    pattern: row.pattern,
    priority: row.priority,
    tenantId: row.tenantId,
    enabled: row.enabled,
  };
}

function settingKey(name: string): 'enabled' | 'default_priority' | 'cache_ttl_sec' {
  const key = name.startsWith('priority.') ? name.slice('priority.'.length) : name;
  if (key === 'enabled' || key === 'default_priority' || key === 'cache_ttl_sec') return key;
  throw new InvalidInputError('name', `unknown setting "${name}" (known: ${SETTING_NAMES.join(', ')})`);
}

function checkSettingValue(key: 'enabled' | 'default_priority' | 'cache_ttl_sec', value: boolean | number): void {
  if (key === 'enabled') {
    if (typeof value !== 'boolean') throw new InvalidInputError('value', 'priority.enabled must be true or false');
    return;
  }
  const max = key === 'default_priority' ? 1000 : 86_400;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidInputError('value', `priority.${key} must be a whole number from 0 to ${max}`);
  }
}

/** Last 4 characters for operators; nothing for a secret too short to reveal part of safely. */
function last4(secret: string): string {
  return secret.length >= 12 ? secret.slice(-4) : '';
}

/**
 * Runs a write and turns constraint violations into typed errors: a unique index into the ConflictError the caller
 * names for it, a CHECK into InvalidInputError naming the column.
 */
async function mapErrors<T>(fn: () => Promise<T>, conflicts: Readonly<Record<string, () => Error>>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const state = sqlState(error);
    const constraint = violatedConstraint(error);
    if (state === '23505') {
      const make = constraint !== undefined ? conflicts[constraint] : undefined;
      throw make ? make() : new ConflictError('row', 'id', 'a row with these values already exists');
    }
    if (state === '23514') throw new InvalidInputError(checkField(constraint), `value out of range (${constraint ?? 'check constraint'})`);
    throw error;
  }
}

/** provider_accounts_rpm_limit_check -> rpmLimit */
function checkField(constraint: string | undefined): string {
  const match = constraint ? /^(?:provider_accounts|system_api_keys|api_key_priority_mappings|api_key_priority_config)_(.+)_check$/.exec(constraint) : null;
  const column = match?.[1] ?? 'value';
  const renamed = column === 'priority_tier' ? 'tier' : column;
  return renamed.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
