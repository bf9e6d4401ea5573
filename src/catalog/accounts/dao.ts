// Upstream accounts: their SQL. Secrets are encrypted before they reach SQL and never read back here, except by
// re-encryption (which never returns them).
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { QUOTA_EXHAUSTED_REASON_PREFIX } from '../../core/provider-errors.js';
import type { AccountStatus } from '../../core/types.js';
import type { Keyring } from '../../secrets/keyring.js';
import { ConflictError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { providerBySlug } from '../providers/dao.js';
import { isUuid } from '../rules.js';
import { activeRowByRef, mapErrors, UpdateBuilder, type RowLookup } from '../sql.js';
import { ACCOUNT_COLUMNS, toAccount, type AccountRow, type DbAccount } from './rows.js';
import { ACCOUNT_DEFAULTS, type AccountPatch, type NewAccount } from './schema.js';

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

export class AccountDao {
  constructor(
    private readonly sql: SqlClient,
    private readonly keyring: Keyring,
  ) {}

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
                rpm_limit, tpm_limit, max_concurrency, status, tags, created_by, updated_by, models, scope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $14, $16::text[], $17)
             RETURNING *, $15::text AS provider_slug`,
            [
              id,
              provider.id,
              input.name,
              encrypted.ciphertext,
              encrypted.keyVersion,
              last4(input.apiKey),
              input.weight ?? ACCOUNT_DEFAULTS.weight,
              input.tier ?? ACCOUNT_DEFAULTS.tier,
              input.rpmLimit ?? null,
              input.tpmLimit ?? null,
              input.maxConcurrency ?? null,
              input.status ?? ACCOUNT_DEFAULTS.status,
              JSON.stringify(input.tags ?? {}),
              actor,
              provider.slug,
              [...(input.models ?? [])],
              input.scope ?? null,
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
      if (patch.models !== undefined) set('models', [...patch.models], 'models', '::text[]');
      if (patch.scope !== undefined) set('scope', patch.scope, 'scope');
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

  /**
   * Whether the account's stored upstream key equals `secret` (decrypted in memory only, compared in constant time),
   * so `keypool diff` can say `key: changed` without ever printing either. An undecryptable key counts as different.
   * @throws NotFoundError
   */
  async storedKeyEquals(ref: string, secret: string): Promise<boolean> {
    const current = await accountByRef(this.sql, ref, false);
    const rows = await this.sql.query<{ encrypted_key: string; key_version: string }>(
      `SELECT encrypted_key, key_version FROM provider_accounts WHERE id = $1`,
      [current.id],
    );
    let stored: string;
    try {
      stored = this.keyring.decrypt({ ciphertext: rows[0]!.encrypted_key, keyVersion: rows[0]!.key_version }, current.id);
    } catch {
      return false;
    }
    const a = Buffer.from(stored, 'utf8');
    const b = Buffer.from(secret, 'utf8');
    return a.length === b.length && timingSafeEqual(a, b);
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

  /**
   * Takes an active account out of its pool because its provider said so: `invalid` (upstream said 401/403; audited
   * account_invalidated) or `disabled` (its credit is used up; audited account_disabled). A no-op otherwise.
   */
  /** See enableQuotaExhaustedAccounts. */
  enableQuotaExhausted(disabledBefore: Date, actor: string, afterMs: number): ReturnType<typeof enableQuotaExhaustedAccounts> {
    return enableQuotaExhaustedAccounts(this.sql, disabledBefore, actor, afterMs);
  }

  async markInvalid(accountId: string, reason: string, actor: string, as: 'invalid' | 'disabled' = 'invalid'): Promise<void> {
    if (!isUuid(accountId)) return;
    await this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ id: string; name: string; provider_slug: string }>(
        `UPDATE provider_accounts a SET status = $4, disabled_reason = $2, updated_by = $3
         FROM providers p WHERE a.id = $1 AND p.id = a.provider_id AND a.deleted_at IS NULL AND a.status = 'active'
         RETURNING a.id, a.name, p.slug AS provider_slug`,
        [accountId, reason, actor, as],
      );
      const row = rows[0];
      if (!row) return;
      const action = as === 'invalid' ? 'account_invalidated' : 'account_disabled';
      await insertAudit(tx, [
        { keyId: null, action, actor, metadata: { accountId: row.id, provider: row.provider_slug, name: row.name, reason } },
      ]);
    });
  }
}

/**
 * Enables every account disabled as quota_exhausted (QUOTA_EXHAUSTED_REASON_PREFIX) and left so since before
 * `disabledBefore` (its last change), audited account_enabled: the re-probe of KEYPOOL_QUOTA_REPROBE_MS. One
 * conditional UPDATE, so replicas sweeping at once enable (and audit) each account once.
 */
export async function enableQuotaExhaustedAccounts(
  sql: SqlClient,
  disabledBefore: Date,
  actor: string,
  afterMs: number,
): Promise<readonly { readonly id: string; readonly name: string; readonly providerSlug: string }[]> {
  return sql.transaction(async (tx) => {
    const rows = await tx.query<{ id: string; name: string; provider_slug: string; disabled_reason: string }>(
      `WITH due AS (
         SELECT a.id, a.disabled_reason FROM provider_accounts a
         WHERE a.status = 'disabled' AND a.deleted_at IS NULL AND starts_with(a.disabled_reason, $1) AND a.updated_at < $2
         FOR UPDATE
       )
       UPDATE provider_accounts a SET status = 'active', disabled_reason = NULL, updated_by = $3
       FROM due, providers p WHERE a.id = due.id AND p.id = a.provider_id
       RETURNING a.id, a.name, p.slug AS provider_slug, due.disabled_reason`,
      [QUOTA_EXHAUSTED_REASON_PREFIX, disabledBefore, actor],
    );
    if (rows.length > 0) {
      await insertAudit(
        tx,
        rows.map((row) => ({
          keyId: null,
          action: 'account_enabled' as const,
          actor,
          metadata: {
            accountId: row.id,
            provider: row.provider_slug,
            name: row.name,
            reason: `re-probe: disabled as quota_exhausted for ${Math.round(afterMs / 60_000)} min or more`,
            previous: 'disabled',
            previousReason: row.disabled_reason,
          },
        })),
      );
    }
    return rows.map((row) => ({ id: row.id, name: row.name, providerSlug: row.provider_slug }));
  });
}

const ACCOUNT_LOOKUP: RowLookup = {
  entity: 'account',
  from: 'provider_accounts a JOIN providers p ON p.id = a.provider_id',
  alias: 'a',
  columns: ACCOUNT_COLUMNS,
  alsoWhere: 'p.deleted_at IS NULL',
  byName: true,
};

function accountByRef(sql: SqlClient, ref: string, forUpdate: boolean): Promise<DbAccount> {
  return activeRowByRef<DbAccount>(sql, ACCOUNT_LOOKUP, ref, forUpdate);
}

/** Last 4 characters for operators; nothing for a secret too short to reveal part of safely. */
function last4(secret: string): string {
  return secret.length >= 12 ? secret.slice(-4) : '';
}
