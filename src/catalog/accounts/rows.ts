// Account rows as the DAO returns them (never the secret: only its last 4 characters), and their mapping from SQL.
import type { AccountStatus } from '../../core/types.js';

/** Account as shown to operators: never the secret, only its last 4 characters. */
export interface AccountRow {
  readonly id: string;
  readonly providerId: string;
  readonly providerSlug: string;
  readonly name: string;
  readonly keyLast4: string;
  readonly keyVersion: string;
  readonly weight: number;
  readonly tier: number;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  readonly maxConcurrency: number | null;
  readonly status: AccountStatus;
  readonly disabledReason: string | null;
  readonly tags: Readonly<Record<string, unknown>>;
  /** Models the account may serve (exact names or `prefix*` globs); empty = any. */
  readonly models: readonly string[];
  /** Quota scope shared with sibling accounts; null = its own. */
  readonly scope: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** An account as loaded for compilation: the operator view plus its encrypted secret (decrypted only in memory). */
export interface StoredAccount extends AccountRow {
  /** base64(iv | tag | ciphertext); see src/secrets/keyring.ts. */
  readonly encryptedKey: string;
}

export const ACCOUNT_COLUMNS = `a.id, a.provider_id, p.slug AS provider_slug, a.name, a.key_last4, a.key_version, a.weight,
  a.priority_tier, a.rpm_limit, a.tpm_limit, a.max_concurrency, a.status, a.disabled_reason, a.tags, a.models, a.scope, a.created_at, a.updated_at`;

export interface DbAccount {
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
  models: string[] | null;
  scope: string | null;
  created_at: Date;
  updated_at: Date;
}

export function toAccount(row: DbAccount): AccountRow {
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
    models: row.models ?? [],
    scope: row.scope ?? null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
