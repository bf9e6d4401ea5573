// The catalog: keypool's durable configuration (providers, accounts, client keys, mappings, settings) and the
// logs the request path appends (audit, usage), on PGlite or PostgreSQL. One folder per entity holds its schema
// (validated operator input), its rows and its DAO (its SQL); this facade groups the DAOs, implements the request
// path's DurableWrites and loads the snapshot's ConfigData.
//
// Rules every DAO keeps:
// - Reads see active rows only (deleted_at IS NULL); deletes are soft.
// - Every write records its actor (created_by / updated_by) and, where the operator needs a trail, appends an
//   audit row in the same transaction.
// - Secrets: an upstream key is encrypted before it reaches SQL and never returned (only its last 4 characters);
//   a client key is returned once by create/rotate and stored only as its HMAC digest plus a display prefix.
// - Failures the caller can act on are typed (src/stores/errors.ts): ConflictError, NotFoundError,
//   InvalidInputError, StateError. Messages never contain secrets.
// References: every `ref` parameter takes an id (UUID) or, where names are unique, a name.
import type { Keyring } from '../secrets/keyring.js';
import type { SqlClient } from '../stores/sql-client.js';
import type { DurableWrites } from '../ports.js';
import { AccountDao } from './accounts/dao.js';
import { ACCOUNT_COLUMNS, toAccount, type DbAccount, type StoredAccount } from './accounts/rows.js';
import { AuditDao } from './audit/dao.js';
import type { AuditEntry } from './audit/rows.js';
import { KeyDao } from './keys/dao.js';
import { KEY_COLUMNS, toKey, type DbKey, type StoredKey } from './keys/rows.js';
import { MappingDao } from './mappings/dao.js';
import { MAPPING_COLUMNS, toMapping, type DbMapping } from './mappings/rows.js';
import { ProviderDao } from './providers/dao.js';
import { PROVIDER_COLUMNS, toProvider, type DbProvider } from './providers/rows.js';
import { readSettings, SettingDao } from './settings/dao.js';
import { TenantDao } from './tenants/dao.js';
import { TENANT_COLUMNS, toTenant, type DbTenant } from './tenants/rows.js';
import { UsageDao } from './usage/dao.js';
import type { TokenUsageBucket, UsageBucket } from './usage/rows.js';
import { TokenUsageDao } from './usage/tokens.js';
import { PriceDao } from './prices/dao.js';
import { PRICE_COLUMNS, toPrice, type DbPrice } from './prices/rows.js';
import type { ConfigData } from './config-data.js';

export interface RepositorySecrets {
  /** Encrypts upstream keys (current version) and decrypts them for re-encryption. */
  readonly keyring: Keyring;
  /** HMAC pepper for client key digests (src/secrets/pepper.ts). */
  readonly pepper: Uint8Array;
}

/**
 * The catalog, grouped by entity: `repo.keys.create(...)`, `repo.accounts.setStatus(...)`, ...
 * Implements DurableWrites (the request path's buffered writes) and loads the snapshot's ConfigData.
 */
export class ConfigRepository implements DurableWrites {
  readonly providers: ProviderDao;
  readonly accounts: AccountDao;
  readonly keys: KeyDao;
  readonly mappings: MappingDao;
  readonly settings: SettingDao;
  readonly tenants: TenantDao;
  readonly audit: AuditDao;
  readonly usage: UsageDao;
  readonly tokenUsage: TokenUsageDao;
  readonly prices: PriceDao;
  readonly #sql: SqlClient;
  readonly #secrets: RepositorySecrets;

  constructor(sql: SqlClient, secrets: RepositorySecrets) {
    this.#sql = sql;
    this.#secrets = secrets;
    this.providers = new ProviderDao(sql);
    this.accounts = new AccountDao(sql, secrets.keyring);
    this.keys = new KeyDao(sql, secrets.pepper);
    this.mappings = new MappingDao(sql);
    this.settings = new SettingDao(sql);
    this.tenants = new TenantDao(sql);
    this.audit = new AuditDao(sql);
    this.usage = new UsageDao(sql);
    this.tokenUsage = new TokenUsageDao(sql);
    this.prices = new PriceDao(sql);
  }

  /**
   * Runs fn with a repository bound to one transaction: every DAO call inside commits or rolls back together
   * (a DAO's own transaction joins it). `keypool apply` reconciles a whole file this way.
   */
  transaction<T>(fn: (repo: ConfigRepository) => Promise<T>): Promise<T> {
    return this.#sql.transaction((tx) => fn(new ConfigRepository(tx, this.#secrets)));
  }

  // DurableWrites: the engine's buffered writer calls these; each is idempotent or additive.

  appendAudit(entries: readonly AuditEntry[]): Promise<void> {
    return this.audit.append(entries);
  }

  markAccountInvalid(accountId: string, reason: string, actor: string, as: 'invalid' | 'disabled' = 'invalid'): Promise<void> {
    return this.accounts.markInvalid(accountId, reason, actor, as);
  }

  touchKeys(keyIds: readonly string[], at: Date): Promise<void> {
    return this.keys.touch(keyIds, at);
  }

  addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    return this.usage.add(buckets);
  }

  addTokenUsage(buckets: readonly TokenUsageBucket[]): Promise<void> {
    return this.tokenUsage.add(buckets);
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
      const tenants = await tx.query<DbTenant>(`SELECT ${TENANT_COLUMNS} FROM tenants ORDER BY id`);
      const prices = await tx.query<DbPrice>(`SELECT ${PRICE_COLUMNS} FROM token_prices ORDER BY provider_slug, model`);
      return {
        readAt: head!.read_at,
        configVersion: Number(head!.version),
        providers: providers.map(toProvider),
        accounts: accounts.map((row): StoredAccount => ({ ...toAccount(row), encryptedKey: row.encrypted_key })),
        keys: keys.map((row): StoredKey => ({ ...toKey(row), keyHash: row.key_hash, previousKeyHash: row.previous_key_hash })),
        mappings: mappings.map(toMapping),
        settings,
        tenants: tenants.map(toTenant),
        prices: prices.map(toPrice),
      };
    });
  }

  /** The config_version counter (bumped by every configuration write): a cheap "did anything change?" probe. */
  async configVersion(): Promise<number> {
    const rows = await this.#sql.query<{ version: number }>(`SELECT version FROM config_version WHERE id = 1`);
    return Number(rows[0]?.version ?? 0);
  }
}
