// ConfigData (one consistent read of the store) -> the immutable Snapshot every decision reads.
// Pure apart from decryption: no I/O, time comes in as nowMs. Anything wrong with one row (an account whose secret
// no longer decrypts, a mapping whose pattern is now refused) drops that row and is reported as a warning; it
// never fails the whole snapshot, so one bad row cannot take every tenant down.
import { compileAllowlist } from '../core/cidr.js';
import { learnsPerModel } from '../core/learned-state.js';
import { compileModelMatcher } from '../core/models.js';
import { readsQueryCredential } from '../core/providers/auth.js';
import { countsTokens } from '../core/quota.js';
import { compilePriority, type CompiledPriority } from '../core/priority/index.js';
import type { QuotaSubject } from '../core/admission.js';
import type { ProviderPrices, TokenPrice } from '../core/usage-cost.js';
import type { Account, Allowlist, KeyEntry, ProviderPool, Snapshot, SystemKey } from '../core/types.js';
import type { Keyring } from '../secrets/keyring.js';
import { cachedKeyDigester } from './digest-cache.js';
import type { StoredAccount } from '../catalog/accounts/rows.js';
import type { ConfigData } from '../catalog/config-data.js';
import type { StoredKey } from '../catalog/keys/rows.js';

export interface CompileDeps {
  /** HMAC pepper: the snapshot's digestKey must match the digests the repository stored. */
  readonly pepper: Uint8Array;
  /** Decrypts account secrets into memory. */
  readonly keyring: Keyring;
}

export interface CompileWarning {
  readonly kind: 'account_secret' | 'mapping';
  /** Row id (account or mapping). */
  readonly id: string;
  /** Why the row was left out; never contains a secret. */
  readonly message: string;
}

/** A Snapshot plus what compiling it left out. */
export interface CompiledSnapshot extends Snapshot {
  readonly priority: CompiledPriority;
  readonly warnings: readonly CompileWarning[];
  /** config_version of the data it was compiled from. */
  readonly configVersion: number;
}

export function compileSnapshot(data: ConfigData, deps: CompileDeps, version: number, nowMs: number): CompiledSnapshot {
  const warnings: CompileWarning[] = [];
  const keysByDigest = compileKeys(data.keys, nowMs);
  const pools = compilePools(data, deps.keyring, warnings);
  const priority = compilePriority(
    data.mappings.map((mapping) => ({
      id: mapping.id,
      pattern: mapping.pattern,
      matchType: mapping.matchType,
      priority: mapping.priority,
      tenantId: mapping.tenantId,
      tenantName: mapping.tenantName,
      enabled: mapping.enabled,
      createdAtMs: mapping.createdAt.getTime(),
      window: mapping.window,
    })),
    data.settings,
  );
  for (const skipped of priority.skipped) warnings.push({ kind: 'mapping', id: skipped.id, message: skipped.error });
  const tenants = compileTenants(data);
  return Object.freeze({
    version,
    loadedAtMs: nowMs,
    digestKey: cachedKeyDigester(deps.pepper),
    keysByDigest,
    pools,
    priority,
    prioritySettings: Object.freeze({ ...data.settings }),
    tenants,
    prices: compilePrices(data),
    anyTokenQuota: [...tenants.values()].some(countsTokens) || [...keysByDigest.values()].some((entry) => entry.key.quota != null && countsTokens(entry.key.quota)),
    warnings: Object.freeze(warnings),
    configVersion: data.configVersion,
  });
}

function compileKeys(keys: readonly StoredKey[], nowMs: number): Map<string, KeyEntry> {
  const byDigest = new Map<string, KeyEntry>();
  const graceEntries: Array<[string, KeyEntry]> = [];
  // Many keys share one allowlist (a team's CIDRs): compile each distinct list once per snapshot.
  const allowlists = new Map<string, Allowlist | null>();
  const allowlistOf = (cidrs: readonly string[]): Allowlist | null => {
    const id = cidrs.join(',');
    let allowlist = allowlists.get(id);
    if (allowlist === undefined) {
      allowlist = compileAllowlist(cidrs);
      allowlists.set(id, allowlist);
    }
    return allowlist;
  };
  for (const row of keys) {
    const key: SystemKey = Object.freeze({
      id: row.id,
      name: row.name,
      tenantId: row.tenantId,
      keyPrefix: row.keyPrefix,
      status: row.status,
      expiresAtMs: row.expiresAt?.getTime() ?? null,
      allowlist: allowlistOf(row.allowedIps),
      quota:
        (row.rpmLimit ?? null) === null && (row.rpdLimit ?? null) === null && (row.tpmLimit ?? null) === null && (row.tpdLimit ?? null) === null
          ? null
          : Object.freeze({
              scope: 'key',
              id: row.id,
              rpmLimit: row.rpmLimit ?? null,
              rpdLimit: row.rpdLimit ?? null,
              tpmLimit: row.tpmLimit ?? null,
              tpdLimit: row.tpdLimit ?? null,
            }),
    });
    byDigest.set(row.keyHash, Object.freeze({ key, graceEndsAtMs: null }));
    const graceEndsAtMs = row.previousKeyExpiresAt?.getTime() ?? null;
    if (row.previousKeyHash !== null && graceEndsAtMs !== null && graceEndsAtMs > nowMs) {
      graceEntries.push([row.previousKeyHash, Object.freeze({ key, graceEndsAtMs })]);
    }
  }
  // A current digest always wins over another key's rotated-out one (digests are unique, so this is defensive).
  for (const [digest, entry] of graceEntries) if (!byDigest.has(digest)) byDigest.set(digest, entry);
  return byDigest;
}

/** Tenant rows as quota subjects by id (a row without limits is kept: it names the tenant in metrics). */
function compileTenants(data: ConfigData): Map<string, QuotaSubject> {
  const tenants = new Map<string, QuotaSubject>();
  for (const row of data.tenants ?? []) {
    tenants.set(
      row.id,
      Object.freeze({ scope: 'tenant', id: row.id, rpmLimit: row.rpmLimit, rpdLimit: row.rpdLimit, tpmLimit: row.tpmLimit ?? null, tpdLimit: row.tpdLimit ?? null }),
    );
  }
  return tenants;
}

/** Token prices by provider, then model pattern. */
function compilePrices(data: ConfigData): Map<string, ProviderPrices> {
  const prices = new Map<string, Map<string, TokenPrice>>();
  for (const row of data.prices ?? []) {
    let provider = prices.get(row.providerSlug);
    if (provider === undefined) {
      provider = new Map();
      prices.set(row.providerSlug, provider);
    }
    provider.set(
      row.model,
      Object.freeze({
        inputUsdPerMTok: row.inputUsdPerMTok,
        outputUsdPerMTok: row.outputUsdPerMTok,
        cachedInputUsdPerMTok: row.cachedInputUsdPerMTok,
        cacheCreationUsdPerMTok: row.cacheCreationUsdPerMTok,
      }),
    );
  }
  return prices;
}

function compilePools(data: ConfigData, keyring: Keyring, warnings: CompileWarning[]): Map<string, ProviderPool> {
  const accountsBySlug = new Map<string, Account[]>();
  for (const row of data.accounts) {
    if (row.status !== 'active') continue;
    const account = decryptAccount(row, keyring, warnings);
    if (!account) continue;
    const list = accountsBySlug.get(row.providerSlug) ?? [];
    list.push(account);
    accountsBySlug.set(row.providerSlug, list);
  }
  const pools = new Map<string, ProviderPool>();
  for (const provider of data.providers) {
    const accounts = (accountsBySlug.get(provider.slug) ?? []).sort(byTierThenName);
    // The model is needed to pick (an account serves only some models) or, with the provider's per_model_state
    // switch, to keep its learned state per model; a dialect without per-model limits gains nothing from a body.
    const needsModel = accounts.some((account) => account.restrictsModels) || (provider.perModelState && learnsPerModel(provider.rateLimitDialect));
    pools.set(
      provider.slug,
      Object.freeze({
        slug: provider.slug,
        authStyle: provider.authStyle,
        dialect: provider.rateLimitDialect,
        strategy: provider.defaultStrategy,
        accounts: Object.freeze(accounts),
        needsModel,
        countsTokens: accounts.some((account) => account.tpmLimit !== null),
        readsPath: needsModel || provider.rateLimitDialect === 'azure' || readsQueryCredential(provider.authStyle),
      }),
    );
  }
  return pools;
}

function decryptAccount(row: StoredAccount, keyring: Keyring, warnings: CompileWarning[]): Account | null {
  let secret: string;
  try {
    secret = keyring.decrypt({ ciphertext: row.encryptedKey, keyVersion: row.keyVersion }, row.id);
  } catch (error) {
    warnings.push({
      kind: 'account_secret',
      id: row.id,
      message: `account ${row.providerSlug}/${row.name} left out of the pool: ${(error as Error).message}`,
    });
    return null;
  }
  return Object.freeze({
    id: row.id,
    providerSlug: row.providerSlug,
    name: row.name,
    secret,
    weight: row.weight,
    tier: row.tier,
    rpmLimit: row.rpmLimit,
    tpmLimit: row.tpmLimit,
    maxConcurrency: row.maxConcurrency,
    status: row.status,
    scope: row.scope ?? null,
    servesModel: compileModelMatcher(row.models ?? []),
    restrictsModels: (row.models ?? []).length > 0,
  });
}

function byTierThenName(a: Account, b: Account): number {
  return a.tier - b.tier || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}
