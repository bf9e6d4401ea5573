// Tenant rows as the DAO returns them, and their mapping from SQL.

export interface TenantRow {
  readonly id: string;
  readonly name: string;
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  /** Token quotas (tokens per minute, per day); null = unlimited (absent: a row built before them). */
  readonly tpmLimit?: number | null;
  readonly tpdLimit?: number | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export const TENANT_COLUMNS = 'id, name, rpm_limit, rpd_limit, tpm_limit, tpd_limit, created_at, updated_at';

export interface DbTenant {
  id: string;
  name: string;
  rpm_limit: number | null;
  rpd_limit: number | null;
  tpm_limit: number | null;
  tpd_limit: number | null;
  created_at: Date;
  updated_at: Date;
}

export function toTenant(row: DbTenant): TenantRow {
  return {
    id: row.id,
    name: row.name,
    rpmLimit: row.rpm_limit,
    rpdLimit: row.rpd_limit,
    tpmLimit: row.tpm_limit ?? null,
    tpdLimit: row.tpd_limit ?? null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
