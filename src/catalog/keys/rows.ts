// Client key rows as the DAO returns them (never a digest, except in StoredKey for the snapshot), and their mapping.
import type { KeyStatus } from '../../core/types.js';

export interface SystemKeyRow {
  readonly id: string;
  readonly name: string;
  readonly tenantId: string | null;
  readonly keyPrefix: string;
  readonly status: KeyStatus;
  readonly expiresAt: Date | null;
  readonly allowedIps: readonly string[];
  readonly rotateAfterDays: number | null;
  /** Request quotas of this key; null = unlimited. */
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  /** Token quotas of this key (tokens per minute, per day); null = unlimited (absent: a row built before them). */
  readonly tpmLimit?: number | null;
  readonly tpdLimit?: number | null;
  readonly lastRotatedAt: Date | null;
  readonly previousKeyExpiresAt: Date | null;
  readonly lastUsedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A system key as loaded for compilation: the operator view plus its digests. */
export interface StoredKey extends SystemKeyRow {
  /** HMAC-SHA256(pepper, key), hex. */
  readonly keyHash: string;
  /** Digest of the key before the last rotation; valid until previousKeyExpiresAt. */
  readonly previousKeyHash: string | null;
}

export const KEY_COLUMNS = `id, name, tenant_id, key_prefix, status, expires_at, allowed_ips, rotate_after_days, rpm_limit, rpd_limit,
  tpm_limit, tpd_limit, last_rotated_at, previous_key_expires_at, last_used_at, created_at, updated_at`;

export interface DbKey {
  id: string;
  name: string;
  tenant_id: string | null;
  key_prefix: string;
  status: 'active' | 'revoked';
  expires_at: Date | null;
  allowed_ips: string[];
  rotate_after_days: number | null;
  rpm_limit: number | null;
  rpd_limit: number | null;
  tpm_limit: number | null;
  tpd_limit: number | null;
  last_rotated_at: Date | null;
  previous_key_expires_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export function toKey(row: DbKey): SystemKeyRow {
  return {
    id: row.id,
    name: row.name,
    tenantId: row.tenant_id,
    keyPrefix: row.key_prefix,
    status: row.status,
    expiresAt: row.expires_at,
    allowedIps: row.allowed_ips ?? [],
    rotateAfterDays: row.rotate_after_days,
    rpmLimit: row.rpm_limit ?? null,
    rpdLimit: row.rpd_limit ?? null,
    tpmLimit: row.tpm_limit ?? null,
    tpdLimit: row.tpd_limit ?? null,
    lastRotatedAt: row.last_rotated_at,
    previousKeyExpiresAt: row.previous_key_expires_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
