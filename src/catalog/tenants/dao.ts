// Tenants: their SQL. Keys and mappings name a tenant by id without a foreign key (see sql/migrations/0005_tenants.sql):
// deleting a tenant row removes its limits, not the keys that carry its id.
import { ConflictError, NotFoundError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { mapErrors, UpdateBuilder } from '../sql.js';
import { TENANT_COLUMNS, toTenant, type DbTenant, type TenantRow } from './rows.js';
import type { NewTenant, TenantPatch } from './schema.js';

export class TenantDao {
  constructor(private readonly sql: SqlClient) {}

  /** @throws ConflictError (the id exists) */
  async create(input: NewTenant, actor: string): Promise<TenantRow> {
    return this.sql.transaction(async (tx) => {
      const rows = await mapErrors(
        () =>
          tx.query<DbTenant>(
            `INSERT INTO tenants (id, name, rpm_limit, rpd_limit, tpm_limit, tpd_limit, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ${TENANT_COLUMNS}`,
            [input.id, input.name, input.rpmLimit ?? null, input.rpdLimit ?? null, input.tpmLimit ?? null, input.tpdLimit ?? null, actor],
          ),
        { tenants_pkey: () => new ConflictError('tenant', 'id', `a tenant with id "${input.id}" already exists`) },
      );
      const row = toTenant(rows[0]!);
      await insertAudit(tx, [{ keyId: null, action: 'tenant_created', actor, metadata: tenantAudit(row) }]);
      return row;
    });
  }

  /** Every tenant, by id. */
  async list(): Promise<TenantRow[]> {
    const rows = await this.sql.query<DbTenant>(`SELECT ${TENANT_COLUMNS} FROM tenants ORDER BY id`);
    return rows.map(toTenant);
  }

  /** @throws NotFoundError */
  async get(id: string): Promise<TenantRow> {
    return toTenant(await tenantById(this.sql, id, false));
  }

  /** @throws NotFoundError */
  async update(id: string, patch: TenantPatch, actor: string): Promise<TenantRow> {
    return this.sql.transaction(async (tx) => {
      const current = await tenantById(tx, id, true);
      const update = new UpdateBuilder();
      const changes: Record<string, unknown> = {};
      if (patch.name !== undefined) {
        update.set('name', patch.name);
        changes.name = patch.name;
      }
      if (patch.rpmLimit !== undefined) {
        update.set('rpm_limit', patch.rpmLimit);
        changes.rpmLimit = patch.rpmLimit;
      }
      if (patch.rpdLimit !== undefined) {
        update.set('rpd_limit', patch.rpdLimit);
        changes.rpdLimit = patch.rpdLimit;
      }
      if (patch.tpmLimit !== undefined) {
        update.set('tpm_limit', patch.tpmLimit);
        changes.tpmLimit = patch.tpmLimit;
      }
      if (patch.tpdLimit !== undefined) {
        update.set('tpd_limit', patch.tpdLimit);
        changes.tpdLimit = patch.tpdLimit;
      }
      if (update.isEmpty) return toTenant(current);
      const rows = await mapErrors(() => tx.query<DbTenant>(...update.statement('tenants', actor, current.id, TENANT_COLUMNS)), {});
      await insertAudit(tx, [{ keyId: null, action: 'tenant_updated', actor, metadata: { id: current.id, changes } }]);
      return toTenant(rows[0]!);
    });
  }

  /** Removes the tenant row (its limits); keys and mappings keep the id. @throws NotFoundError */
  async delete(id: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const current = await tenantById(tx, id, true);
      await tx.query(`DELETE FROM tenants WHERE id = $1`, [current.id]);
      await insertAudit(tx, [{ keyId: null, action: 'tenant_deleted', actor, metadata: tenantAudit(toTenant(current)) }]);
    });
  }
}

function tenantAudit(row: TenantRow): Record<string, unknown> {
  return { id: row.id, name: row.name, rpmLimit: row.rpmLimit, rpdLimit: row.rpdLimit, tpmLimit: row.tpmLimit ?? null, tpdLimit: row.tpdLimit ?? null };
}

async function tenantById(sql: SqlClient, id: string, forUpdate: boolean): Promise<DbTenant> {
  const rows = await sql.query<DbTenant>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE id = $1 ${forUpdate ? 'FOR UPDATE' : ''}`, [id]);
  if (rows.length === 0) throw new NotFoundError('tenant', id);
  return rows[0]!;
}
