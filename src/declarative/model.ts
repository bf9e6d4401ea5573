// keypool.yaml as data: what a file declares (DesiredState), what the store holds (CurrentState), and the problems
// found in a file. Field names in a file are snake_case (`max_concurrency`), as in the admin API; the catalog's
// validators speak camelCase, and FIELD tables below are the one place that maps the two.
import type { Strategy } from '../core/types.js';
import type { AccountTags } from '../catalog/accounts/schema.js';
import type { AccountRow } from '../catalog/accounts/rows.js';
import type { SystemKeyRow } from '../catalog/keys/rows.js';
import type { MappingRow } from '../catalog/mappings/rows.js';
import type { TenantType } from '../catalog/mappings/schema.js';
import { windowText } from '../catalog/mappings/window.js';
import type { ActiveWindow } from '../core/priority/index.js';
import type { ProviderRow } from '../catalog/providers/rows.js';
import type { Setting } from '../catalog/settings/schema.js';
import type { TenantRow } from '../catalog/tenants/rows.js';
import type { PriceRow } from '../catalog/prices/rows.js';
import type { NewPrice } from '../catalog/prices/schema.js';
import type { MatchType, PrioritySettings } from '../core/types.js';

/** The only file format version so far. */
export const FORMAT_VERSION = 1;

/**
 * Where a secret comes from: an environment variable or a file (a mounted secret). A file never holds a secret
 * inline, so it can live in git and be printed in CI logs.
 */
export type SecretRef = { readonly env: string } | { readonly file: string };

/** Every declared entity remembers its YAML path (`accounts[2]`) so the plan can point at it. */
interface Located {
  readonly at: string;
}

export interface DesiredProvider extends Located {
  readonly slug: string;
  readonly strategy: Strategy;
  /** The provider's per_model_state switch; left out of the file = false. */
  readonly perModelState: boolean;
}

export interface DesiredAccount extends Located {
  readonly provider: string;
  readonly name: string;
  /** null: keep the stored key (an account the file creates must name one). */
  readonly key: SecretRef | null;
  readonly weight: number;
  readonly tier: number;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  readonly maxConcurrency: number | null;
  readonly tags: AccountTags;
  /** Models the account may serve (names or `prefix*` globs); empty = any. */
  readonly models: readonly string[];
  /** Quota scope shared with sibling accounts; null = its own. */
  readonly scope: string | null;
  /** `invalid` is keypool's own verdict on a key (the provider refused it), never declared. */
  readonly status: 'active' | 'disabled';
}

export interface DesiredKey extends Located {
  readonly name: string;
  readonly tenantId: string | null;
  readonly allowedIps: readonly string[];
  readonly expiresAt: Date | null;
  readonly rotateAfterDays: number | null;
  /** Request quotas of the key (`rpm`, `rpd`); null = unlimited. */
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  /** Token quotas of the key (`tpm`, `tpd`); null = unlimited. */
  readonly tpmLimit: number | null;
  readonly tpdLimit: number | null;
  /** Revocation is final: a revoked key cannot be declared active again. */
  readonly status: 'active' | 'revoked';
  /** Issued keys read `kp_<prefix>_<random>`; used only when the file creates the key. */
  readonly prefix: string | null;
  /** An existing key to store (by digest) instead of issuing one. */
  readonly importKey: SecretRef | null;
}

export interface DesiredMapping extends Located {
  readonly matchType: MatchType;
  readonly pattern: string;
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  readonly tenantType: TenantType | null;
  readonly description: string | null;
  readonly enabled: boolean;
  /** Part of the mapping's identity: a file may give one pattern several windows and one always-on rule. */
  readonly window: ActiveWindow | null;
}

/** A tenant row: an id keys and mappings carry, with a name and request quotas. */
export interface DesiredTenant extends Located {
  readonly id: string;
  readonly name: string;
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  /** Token quotas (`tpm`, `tpd`) of all the tenant's keys together; null = unlimited. */
  readonly tpmLimit: number | null;
  readonly tpdLimit: number | null;
}

/**
 * A token price (USD per million tokens) of a provider and model pattern, its identity; the values are the prices
 * entity's own (src/catalog/prices/schema.ts), rounded to the 6 decimals the store keeps.
 */
export type DesiredPrice = NewPrice & Located;

export type DesiredSetting = Setting & Located;

/** A section left out of the file is not managed by it (never pruned, never changed). */
export interface DesiredState {
  readonly providers?: readonly DesiredProvider[];
  readonly accounts?: readonly DesiredAccount[];
  readonly keys?: readonly DesiredKey[];
  readonly mappings?: readonly DesiredMapping[];
  readonly tenants?: readonly DesiredTenant[];
  readonly prices?: readonly DesiredPrice[];
  readonly settings?: readonly DesiredSetting[];
}

/** What the store holds, as the DAOs return it. */
export interface CurrentState {
  readonly providers: readonly ProviderRow[];
  readonly accounts: readonly AccountRow[];
  readonly keys: readonly SystemKeyRow[];
  readonly mappings: readonly MappingRow[];
  /** Absent in a state built by hand = none. */
  readonly tenants?: readonly TenantRow[];
  /** Absent in a state built by hand = none. */
  readonly prices?: readonly PriceRow[];
  readonly settings: PrioritySettings;
}

/** A problem in a file (or in what it asks of the store), at a YAML path; never carries a secret. */
export interface FileProblem {
  /** `accounts[2].rpm`; empty for the file as a whole. */
  readonly path: string;
  /** 1-based line in the file, when known. */
  readonly line: number | null;
  readonly message: string;
}

/** How a file field maps to a catalog validator's field (camelCase). Fields absent here are the file's own. */
export type FieldTable = Readonly<Record<string, string>>;

export const PROVIDER_FIELDS: FieldTable = { slug: 'slug', strategy: 'strategy', per_model_state: 'perModelState' };

export const ACCOUNT_FIELDS: FieldTable = {
  provider: 'providerSlug',
  name: 'name',
  weight: 'weight',
  tier: 'tier',
  rpm: 'rpmLimit',
  tpm: 'tpmLimit',
  max_concurrency: 'maxConcurrency',
  tags: 'tags',
  models: 'models',
  scope: 'scope',
};
export const ACCOUNT_OWN_FIELDS = ['key', 'status'] as const;

export const KEY_FIELDS: FieldTable = {
  name: 'name',
  tenant: 'tenantId',
  allowed_ips: 'allowedIps',
  expires_at: 'expiresAt',
  rotate_after_days: 'rotateAfterDays',
  prefix: 'prefix',
  rpm: 'rpmLimit',
  rpd: 'rpdLimit',
  tpm: 'tpmLimit',
  tpd: 'tpdLimit',
};
export const KEY_OWN_FIELDS = ['status', 'import'] as const;

export const MAPPING_FIELDS: FieldTable = {
  match: 'matchType',
  pattern: 'pattern',
  priority: 'priority',
  tenant: 'tenantId',
  tenant_name: 'tenantName',
  tenant_type: 'tenantType',
  description: 'description',
  enabled: 'enabled',
  window: 'window',
};

export const TENANT_FIELDS: FieldTable = { id: 'id', name: 'name', rpm: 'rpmLimit', rpd: 'rpdLimit', tpm: 'tpmLimit', tpd: 'tpdLimit' };

/** Prices: `input`/`output`/`cached_input`/`cache_creation` in USD per million tokens (numbers or decimal text). */
export const PRICE_FIELDS: FieldTable = {
  provider: 'provider',
  model: 'model',
  input: 'input',
  output: 'output',
  cached_input: 'cachedInput',
  cache_creation: 'cacheCreation',
};

export const SECTIONS = ['version', 'providers', 'accounts', 'keys', 'mappings', 'tenants', 'prices', 'settings'] as const;

/** `openai/prod-1`: how plans and errors name an account. */
export function accountRef(provider: string, name: string): string {
  return `${provider}/${name}`;
}

/** `openrouter openai/gpt-4o*`: how plans and errors name a price (a model pattern may hold a `/`). */
export function priceRef(provider: string, model: string): string {
  return `${provider} ${model}`;
}

/**
 * `prefix "kp_prod_"`, `prefix "kp_batch-" [mon-fri 08:00-20:00 Europe/Berlin]`: how plans and errors name a mapping
 * (its match type, pattern and window are its identity).
 */
export function mappingRef(matchType: string, pattern: string, window: ActiveWindow | null): string {
  const base = `${matchType} ${JSON.stringify(pattern)}`;
  return window === null ? base : `${base} [${windowText(window)}]`;
}
