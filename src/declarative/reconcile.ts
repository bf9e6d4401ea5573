// Reconciling the store to a file: read the current state, compare secrets, plan, and (for apply) write every change
// in ONE transaction, so a failure half-way leaves the store as it was and the running servers never see a mix.
// Every write goes through the entity DAOs, which validate, encrypt, digest and audit it with the actor `apply`.
import type { ConfigRepository } from '../catalog/repository.js';
import { accountRef, type CurrentState, type DesiredState } from './model.js';
import { planChanges, type Change, type Plan } from './plan.js';
import type { ResolvedSecrets } from './secrets.js';

/** The audit log's actor for every write apply makes. */
export const APPLY_ACTOR = 'apply';

export interface ReconcileOptions {
  readonly prune: boolean;
  readonly nowMs: number;
  /** false: plan only (`keypool diff`), nothing is written. */
  readonly write: boolean;
}

/** A key apply issued (the file created it without `import`): its plaintext, shown once like `keys create`. */
export interface IssuedByApply {
  readonly name: string;
  readonly plaintextKey: string;
}

export interface ReconcileResult {
  readonly plan: Plan;
  /** Empty unless written and a key was issued. */
  readonly issued: readonly IssuedByApply[];
  readonly written: boolean;
}

export async function reconcile(
  repo: ConfigRepository,
  desired: DesiredState,
  secrets: ResolvedSecrets,
  options: ReconcileOptions,
): Promise<ReconcileResult> {
  return repo.transaction(async (tx) => {
    const current = await loadCurrentState(tx);
    const plan = planChanges(desired, current, await secretFacts(tx, desired, current, secrets), options);
    if (!options.write || plan.problems.length > 0 || plan.changes.length === 0) return { plan, issued: [], written: false };
    const issued: IssuedByApply[] = [];
    for (const change of plan.changes) {
      const key = await execute(tx, change, secrets);
      if (key) issued.push(key);
    }
    return { plan, issued, written: true };
  });
}

export async function loadCurrentState(repo: ConfigRepository): Promise<CurrentState> {
  return {
    providers: await repo.providers.list(),
    accounts: await repo.accounts.list(),
    keys: await repo.keys.list(),
    mappings: await repo.mappings.list(),
    tenants: await repo.tenants.list(),
    prices: await repo.prices.list(),
    settings: await repo.settings.get(),
  };
}

/** Compares each referenced secret with the stored one (in memory, constant time / by digest); only flags leave. */
async function secretFacts(repo: ConfigRepository, desired: DesiredState, current: CurrentState, secrets: ResolvedSecrets) {
  const accountKeyEquals = new Map<string, boolean>();
  const accounts = new Map(current.accounts.map((a) => [accountRef(a.providerSlug, a.name), a.id]));
  for (const account of desired.accounts ?? []) {
    const id = accounts.get(accountRef(account.provider, account.name));
    const secret = secrets.accountKeys.get(account.at);
    if (id !== undefined && secret !== undefined) accountKeyEquals.set(id, await repo.accounts.storedKeyEquals(id, secret));
  }
  const clientKeyEquals = new Map<string, boolean>();
  const keys = new Map(current.keys.map((k) => [k.name, k.id]));
  for (const key of desired.keys ?? []) {
    const id = keys.get(key.name);
    const secret = secrets.clientKeys.get(key.at);
    if (id !== undefined && secret !== undefined) clientKeyEquals.set(id, await repo.keys.digestEquals(id, secret));
  }
  return { accountKeyEquals, clientKeyEquals };
}

async function execute(repo: ConfigRepository, change: Change, secrets: ResolvedSecrets): Promise<IssuedByApply | null> {
  const actor = APPLY_ACTOR;
  if (change.op === 'delete') {
    if (change.entity === 'price') await repo.prices.delete(change.provider, change.model, actor);
    else if (change.entity === 'account') await repo.accounts.softDelete(change.id, actor);
    else if (change.entity === 'key') await repo.keys.softDelete(change.id, actor);
    else if (change.entity === 'tenant') await repo.tenants.delete(change.id, actor);
    else await repo.mappings.softDelete(change.id, actor);
    return null;
  }
  switch (change.entity) {
    case 'setting':
      await repo.settings.set(change.desired.name, change.desired.value, actor);
      return null;
    case 'provider':
      await repo.providers.update(change.desired.slug, { strategy: change.desired.strategy, perModelState: change.desired.perModelState }, actor);
      return null;
    case 'price': {
      // The DAO's set creates or replaces the whole price, audited as config_set like `keypool prices set`.
      const { at: _at, ...price } = change.desired;
      await repo.prices.set(price, actor);
      return null;
    }
    case 'tenant': {
      const { at: _at, ...tenant } = change.desired;
      if (change.op === 'create') await repo.tenants.create(tenant, actor);
      else await repo.tenants.update(change.id, only(change, TENANT_PATCH, tenant), actor);
      return null;
    }
    case 'mapping': {
      const { at: _at, ...mapping } = change.desired;
      if (change.op === 'create') await repo.mappings.create(mapping, actor);
      else await repo.mappings.update(change.id, only(change, MAPPING_PATCH, mapping), actor);
      return null;
    }
    case 'account': {
      const { at, provider, key: _ref, status, ...fields } = change.desired;
      const apiKey = secrets.accountKeys.get(at);
      if (change.op === 'create') {
        await repo.accounts.create({ providerSlug: provider, ...fields, apiKey: required(apiKey, at), status }, actor);
        return null;
      }
      const patch = { ...only(change, ACCOUNT_PATCH, fields), ...(change.replaceKey ? { apiKey: required(apiKey, at) } : {}) };
      if (Object.keys(patch).length > 0) await repo.accounts.update(change.id, patch, actor);
      if (change.setStatus || (change.replaceKey && status === 'active')) {
        await repo.accounts.setStatus(change.id, status, status === 'disabled' ? 'disabled by keypool apply' : null, actor);
      }
      return null;
    }
    case 'key': {
      const { at, status: _status, importKey: _ref, prefix, ...fields } = change.desired;
      const imported = secrets.clientKeys.get(at);
      if (change.op === 'create') {
        if (imported !== undefined) {
          await repo.keys.import(fields, imported, actor);
          return null;
        }
        const { plaintextKey } = await repo.keys.create({ ...fields, prefix }, actor);
        return { name: fields.name, plaintextKey };
      }
      const patch = only(change, KEY_PATCH, fields);
      if (Object.keys(patch).length > 0) await repo.keys.update(change.id, patch, actor);
      if (change.replaceKey) await repo.keys.rotate(change.id, 0, actor, { importedKey: required(imported, at) });
      if (change.revoke) await repo.keys.revoke(change.id, actor, 'revoked by keypool apply');
      return null;
    }
  }
}

// Which patch field each changed file field sets: an update writes (and audits) only what differs.
const ACCOUNT_PATCH = { weight: 'weight', tier: 'tier', rpm: 'rpmLimit', tpm: 'tpmLimit', max_concurrency: 'maxConcurrency', tags: 'tags', models: 'models', scope: 'scope' } as const;
const KEY_PATCH = {
  tenant: 'tenantId',
  allowed_ips: 'allowedIps',
  expires_at: 'expiresAt',
  rotate_after_days: 'rotateAfterDays',
  rpm: 'rpmLimit',
  rpd: 'rpdLimit',
  tpm: 'tpmLimit',
  tpd: 'tpdLimit',
} as const;
const TENANT_PATCH = { name: 'name', rpm: 'rpmLimit', rpd: 'rpdLimit', tpm: 'tpmLimit', tpd: 'tpdLimit' } as const;
const MAPPING_PATCH = {
  priority: 'priority',
  tenant: 'tenantId',
  tenant_name: 'tenantName',
  tenant_type: 'tenantType',
  description: 'description',
  enabled: 'enabled',
} as const;

function only<T extends object>(change: Change, table: Readonly<Record<string, string>>, values: T): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const field of change.fields) {
    const name = table[field.field];
    if (name !== undefined) out[name] = (values as Record<string, unknown>)[name];
  }
  return out as Partial<T>;
}

function required(secret: string | undefined, at: string): string {
  // The plan only asks for a key that resolved; reaching this is a bug, not bad input.
  if (secret === undefined) throw new Error(`internal: no resolved secret for ${at}`);
  return secret;
}

