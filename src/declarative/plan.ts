// The plan: what `keypool apply` would change to make the store match a file. Pure: the declared state, the current
// state and a few facts about secrets (does the referenced key equal the stored one?) in; a list of changes and
// the problems that forbid applying out. Secrets never enter a plan: a changed key is a flag, shown as `key: changed`.
import { settingsByName } from '../catalog/settings/schema.js';
import type { AccountRow } from '../catalog/accounts/rows.js';
import type { SystemKeyRow } from '../catalog/keys/rows.js';
import type { MappingRow } from '../catalog/mappings/rows.js';
import type { PriceRow } from '../catalog/prices/rows.js';
import {
  accountRef,
  mappingRef,
  priceRef,
  type CurrentState,
  type DesiredAccount,
  type DesiredKey,
  type DesiredTenant,
  type DesiredMapping,
  type DesiredPrice,
  type DesiredProvider,
  type DesiredSetting,
  type DesiredState,
  type FileProblem,
} from './model.js';

/** One field that differs, in the file's terms (`rpm`, `max_concurrency`). */
export interface FieldChange {
  readonly field: string;
  readonly from: unknown;
  readonly to: unknown;
  /** A secret: printed as `changed`, never as values (from/to are null). */
  readonly secret?: true;
}

export type Change =
  | { readonly entity: 'provider'; readonly op: 'update'; readonly ref: string; readonly desired: DesiredProvider; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'setting'; readonly op: 'update'; readonly ref: string; readonly desired: DesiredSetting; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'account'; readonly op: 'create'; readonly ref: string; readonly desired: DesiredAccount; readonly fields: readonly FieldChange[] }
  | {
      readonly entity: 'account';
      readonly op: 'update';
      readonly ref: string;
      readonly id: string;
      readonly desired: DesiredAccount;
      readonly fields: readonly FieldChange[];
      /** The stored status must become the declared one. */
      readonly setStatus: boolean;
      readonly replaceKey: boolean;
    }
  | { readonly entity: 'key'; readonly op: 'create'; readonly ref: string; readonly desired: DesiredKey; readonly fields: readonly FieldChange[] }
  | {
      readonly entity: 'key';
      readonly op: 'update';
      readonly ref: string;
      readonly id: string;
      readonly desired: DesiredKey;
      readonly fields: readonly FieldChange[];
      readonly revoke: boolean;
      readonly replaceKey: boolean;
    }
  | { readonly entity: 'mapping'; readonly op: 'create'; readonly ref: string; readonly desired: DesiredMapping; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'mapping'; readonly op: 'update'; readonly ref: string; readonly id: string; readonly desired: DesiredMapping; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'tenant'; readonly op: 'create'; readonly ref: string; readonly desired: DesiredTenant; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'tenant'; readonly op: 'update'; readonly ref: string; readonly id: string; readonly desired: DesiredTenant; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'price'; readonly op: 'create' | 'update'; readonly ref: string; readonly desired: DesiredPrice; readonly fields: readonly FieldChange[] }
  | { readonly entity: 'account' | 'key' | 'mapping' | 'tenant'; readonly op: 'delete'; readonly ref: string; readonly id: string; readonly fields: readonly FieldChange[] }
  | {
      readonly entity: 'price';
      readonly op: 'delete';
      readonly ref: string;
      readonly provider: string;
      readonly model: string;
      readonly fields: readonly FieldChange[];
    };

export interface Plan {
  readonly changes: readonly Change[];
  /** Reasons the file cannot be applied to this store (unknown provider, reactivating a revoked key, ...). */
  readonly problems: readonly FileProblem[];
}

export interface PlanFacts {
  /** Per account id: does the file's key reference resolve to the stored key? (Only accounts that name a key.) */
  readonly accountKeyEquals: ReadonlyMap<string, boolean>;
  /** Per key id: does the file's `import` resolve to the stored key? (Only keys that import one.) */
  readonly clientKeyEquals: ReadonlyMap<string, boolean>;
}

export interface PlanOptions {
  /** Delete accounts, keys, mappings (soft), tenants and prices the file does not name (in the sections it has). */
  readonly prune: boolean;
  readonly nowMs: number;
}

export function planChanges(desired: DesiredState, current: CurrentState, facts: PlanFacts, options: PlanOptions): Plan {
  const changes: Change[] = [];
  const problems: FileProblem[] = [];
  const problem = (at: string, message: string) => problems.push({ path: at, line: null, message });

  for (const setting of desired.settings ?? []) {
    const from = settingsByName(current.settings)[setting.name];
    // Values are booleans, numbers or (priority.reserve) arrays of numbers: compared by content.
    if (JSON.stringify(from) !== JSON.stringify(setting.value)) {
      changes.push({ entity: 'setting', op: 'update', ref: setting.name, desired: setting, fields: [{ field: 'value', from, to: setting.value }] });
    }
  }

  const providers = new Map(current.providers.map((p) => [p.slug, p]));
  for (const provider of desired.providers ?? []) {
    const row = providers.get(provider.slug);
    if (!row) {
      problem(provider.at, `unknown provider "${provider.slug}"; known: ${[...providers.keys()].join(', ')}`);
      continue;
    }
    const fields: FieldChange[] = [];
    if (row.defaultStrategy !== provider.strategy) fields.push({ field: 'strategy', from: row.defaultStrategy, to: provider.strategy });
    if (row.perModelState !== provider.perModelState) fields.push({ field: 'per_model_state', from: row.perModelState, to: provider.perModelState });
    if (fields.length > 0) changes.push({ entity: 'provider', op: 'update', ref: provider.slug, desired: provider, fields });
  }

  if (desired.accounts) {
    const byRef = new Map(current.accounts.map((a) => [accountRef(a.providerSlug, a.name), a]));
    for (const account of desired.accounts) {
      const ref = accountRef(account.provider, account.name);
      if (!providers.has(account.provider)) {
        problem(`${account.at}.provider`, `unknown provider "${account.provider}"; known: ${[...providers.keys()].join(', ')}`);
        continue;
      }
      const row = byRef.get(ref);
      if (!row) {
        if (account.key === null) problem(account.at, `account ${ref} does not exist yet: give its key as {env: VAR} or {file: PATH}`);
        else changes.push({ entity: 'account', op: 'create', ref, desired: account, fields: accountFields(account) });
        continue;
      }
      byRef.delete(ref);
      const update = accountUpdate(row, account, facts.accountKeyEquals.get(row.id));
      if (update) changes.push(update);
    }
    if (options.prune) for (const [ref, row] of byRef) changes.push({ entity: 'account', op: 'delete', ref, id: row.id, fields: [] });
  }

  if (desired.keys) {
    const byName = new Map(current.keys.map((k) => [k.name, k]));
    for (const key of desired.keys) {
      const row = byName.get(key.name);
      byName.delete(key.name);
      if (!row) {
        if (key.status === 'revoked') continue; // nothing to create: a revoked key that never existed is already "revoked"
        if (key.expiresAt !== null && key.expiresAt.getTime() <= options.nowMs) problem(`${key.at}.expires_at`, 'is not in the future');
        else changes.push({ entity: 'key', op: 'create', ref: key.name, desired: key, fields: keyFields(key) });
        continue;
      }
      if (row.status === 'revoked' && key.status === 'active') {
        problem(`${key.at}.status`, `key ${key.name} is revoked and cannot be made active again: declare status: revoked, or remove it`);
        continue;
      }
      const update = keyUpdate(row, key, facts.clientKeyEquals.get(row.id));
      if (!update) continue;
      const expiry = update.fields.find((f) => f.field === 'expires_at');
      if (expiry && key.expiresAt !== null && key.expiresAt.getTime() <= options.nowMs) problem(`${key.at}.expires_at`, 'is not in the future');
      else changes.push(update);
    }
    if (options.prune) for (const [name, row] of byName) changes.push({ entity: 'key', op: 'delete', ref: name, id: row.id, fields: [] });
  }

  if (desired.mappings) {
    const byRef = new Map(current.mappings.map((m) => [mappingRef(m.matchType, m.pattern, m.window), m]));
    for (const mapping of desired.mappings) {
      const ref = mappingRef(mapping.matchType, mapping.pattern, mapping.window);
      const row = byRef.get(ref);
      byRef.delete(ref);
      if (!row) {
        changes.push({ entity: 'mapping', op: 'create', ref, desired: mapping, fields: mappingFields(mapping) });
        continue;
      }
      const fields = diffFields(mappingValues(row), mappingFields(mapping));
      if (fields.length > 0) changes.push({ entity: 'mapping', op: 'update', ref, id: row.id, desired: mapping, fields });
    }
    if (options.prune) for (const [ref, row] of byRef) changes.push({ entity: 'mapping', op: 'delete', ref, id: row.id, fields: [] });
  }

  if (desired.tenants) {
    const byId = new Map((current.tenants ?? []).map((t) => [t.id, t]));
    for (const tenant of desired.tenants) {
      const row = byId.get(tenant.id);
      byId.delete(tenant.id);
      if (!row) {
        changes.push({ entity: 'tenant', op: 'create', ref: tenant.id, desired: tenant, fields: tenantFields(tenant) });
        continue;
      }
      const fields = diffFields(tenantFields(row), tenantFields(tenant));
      if (fields.length > 0) changes.push({ entity: 'tenant', op: 'update', ref: tenant.id, id: row.id, desired: tenant, fields });
    }
    if (options.prune) for (const [id] of byId) changes.push({ entity: 'tenant', op: 'delete', ref: id, id, fields: [] });
  }

  if (desired.prices) {
    // No provider check: a price may be set before its provider exists (migration 0010), as with `prices set`.
    const byRef = new Map((current.prices ?? []).map((p) => [priceRef(p.providerSlug, p.model), p]));
    for (const price of desired.prices) {
      const ref = priceRef(price.providerSlug, price.model);
      const row = byRef.get(ref);
      byRef.delete(ref);
      if (!row) {
        changes.push({ entity: 'price', op: 'create', ref, desired: price, fields: priceFields(price) });
        continue;
      }
      const fields = diffFields(priceFields(row), priceFields(price));
      if (fields.length > 0) changes.push({ entity: 'price', op: 'update', ref, desired: price, fields });
    }
    if (options.prune) {
      for (const [ref, row] of byRef) changes.push({ entity: 'price', op: 'delete', ref, provider: row.providerSlug, model: row.model, fields: [] });
    }
  }

  return { changes, problems };
}

/** Both sides hold prices rounded to the store's 6 decimals (checkUsdPerMTok, NUMERIC(14, 6)): compared exactly. */
function priceFields(p: Omit<DesiredPrice, 'at'> | PriceRow): FieldChange[] {
  return [
    { field: 'input', from: null, to: p.inputUsdPerMTok },
    { field: 'output', from: null, to: p.outputUsdPerMTok },
    { field: 'cached_input', from: null, to: p.cachedInputUsdPerMTok },
    { field: 'cache_creation', from: null, to: p.cacheCreationUsdPerMTok },
  ];
}

function tenantFields(t: {
  readonly name: string;
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  readonly tpmLimit?: number | null | undefined;
  readonly tpdLimit?: number | null | undefined;
}): FieldChange[] {
  return [
    { field: 'name', from: null, to: t.name },
    { field: 'rpm', from: null, to: t.rpmLimit },
    { field: 'rpd', from: null, to: t.rpdLimit },
    { field: 'tpm', from: null, to: t.tpmLimit ?? null },
    { field: 'tpd', from: null, to: t.tpdLimit ?? null },
  ];
}

function accountUpdate(row: AccountRow, account: DesiredAccount, keyEquals: boolean | undefined): Change | null {
  const fields = diffFields(
    accountFields({ ...account, ...accountRowValues(row) }).filter((f) => f.field !== 'key'),
    accountFields(account).filter((f) => f.field !== 'key'),
  );
  const replaceKey = account.key !== null && keyEquals === false;
  // `invalid` is keypool's verdict on the stored key: it stands for `active` until the key itself is replaced.
  const storedStatus = row.status === 'invalid' && account.status === 'active' && !replaceKey ? 'active' : row.status;
  const setStatus = storedStatus !== account.status;
  if (setStatus) fields.push({ field: 'status', from: row.status, to: account.status });
  if (replaceKey) fields.push({ field: 'key', from: null, to: null, secret: true });
  if (fields.length === 0) return null;
  return { entity: 'account', op: 'update', ref: accountRef(account.provider, account.name), id: row.id, desired: account, fields, setStatus, replaceKey };
}

function keyUpdate(row: SystemKeyRow, key: DesiredKey, importEquals: boolean | undefined): Change | null {
  const fields = diffFields(keyValues(row), keyFields(key).filter((f) => f.field !== 'status'));
  const revoke = row.status === 'active' && key.status === 'revoked';
  if (revoke) fields.push({ field: 'status', from: row.status, to: key.status });
  const replaceKey = key.importKey !== null && importEquals === false && key.status === 'active';
  if (replaceKey) fields.push({ field: 'key', from: null, to: null, secret: true });
  if (fields.length === 0) return null;
  return { entity: 'key', op: 'update', ref: key.name, id: row.id, desired: key, fields, revoke, replaceKey };
}

// Each entity's declared values as (file field, value) pairs; the same function reads a stored row (through
// *Values) so "what differs" is one comparison.

function accountFields(a: Omit<DesiredAccount, 'at'>): FieldChange[] {
  return [
    { field: 'weight', from: null, to: a.weight },
    { field: 'tier', from: null, to: a.tier },
    { field: 'rpm', from: null, to: a.rpmLimit },
    { field: 'tpm', from: null, to: a.tpmLimit },
    { field: 'max_concurrency', from: null, to: a.maxConcurrency },
    { field: 'tags', from: null, to: a.tags },
    { field: 'models', from: null, to: [...a.models] },
    { field: 'scope', from: null, to: a.scope },
    { field: 'status', from: null, to: a.status },
    ...(a.key === null ? [] : [{ field: 'key', from: null, to: null, secret: true as const }]),
  ];
}

function accountRowValues(row: AccountRow): Partial<DesiredAccount> {
  return {
    weight: row.weight,
    tier: row.tier,
    rpmLimit: row.rpmLimit,
    tpmLimit: row.tpmLimit,
    maxConcurrency: row.maxConcurrency,
    tags: row.tags as DesiredAccount['tags'],
    models: row.models,
    scope: row.scope,
  };
}

function keyFields(k: Omit<DesiredKey, 'at'>): FieldChange[] {
  return [
    { field: 'tenant', from: null, to: k.tenantId },
    { field: 'allowed_ips', from: null, to: [...k.allowedIps] },
    { field: 'expires_at', from: null, to: k.expiresAt?.toISOString() ?? null },
    { field: 'rotate_after_days', from: null, to: k.rotateAfterDays },
    { field: 'rpm', from: null, to: k.rpmLimit },
    { field: 'rpd', from: null, to: k.rpdLimit },
    { field: 'tpm', from: null, to: k.tpmLimit },
    { field: 'tpd', from: null, to: k.tpdLimit },
    { field: 'status', from: null, to: k.status },
  ];
}

function keyValues(row: SystemKeyRow): FieldChange[] {
  return [
    { field: 'tenant', from: null, to: row.tenantId },
    { field: 'allowed_ips', from: null, to: [...row.allowedIps] },
    { field: 'expires_at', from: null, to: row.expiresAt?.toISOString() ?? null },
    { field: 'rotate_after_days', from: null, to: row.rotateAfterDays },
    { field: 'rpm', from: null, to: row.rpmLimit },
    { field: 'rpd', from: null, to: row.rpdLimit },
    { field: 'tpm', from: null, to: row.tpmLimit ?? null },
    { field: 'tpd', from: null, to: row.tpdLimit ?? null },
  ];
}

function mappingFields(m: Omit<DesiredMapping, 'at'>): FieldChange[] {
  return [
    { field: 'priority', from: null, to: m.priority },
    { field: 'tenant', from: null, to: m.tenantId },
    { field: 'tenant_name', from: null, to: m.tenantName },
    { field: 'tenant_type', from: null, to: m.tenantType },
    { field: 'description', from: null, to: m.description },
    { field: 'enabled', from: null, to: m.enabled },
  ];
}

function mappingValues(row: MappingRow): FieldChange[] {
  return mappingFields(row);
}

/** Fields of `desired` whose value differs from the same field in `stored`, with from/to filled in. */
function diffFields(stored: readonly FieldChange[], desired: readonly FieldChange[]): FieldChange[] {
  const before = new Map(stored.map((f) => [f.field, f.to]));
  return desired.filter((f) => !sameValue(before.get(f.field), f.to)).map((f) => ({ field: f.field, from: before.get(f.field) ?? null, to: f.to }));
}

/** Deep equality for the plain values fields hold (null, numbers, strings, booleans, lists, tag objects). */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return (a ?? null) === (b ?? null);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return sameValue(ka, kb) && ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}
