// Providers: the upstream API families, one pool each (seeded by sql/seed/providers.sql). Operators change only a
// provider's default strategy; the audit row is a config_set naming the provider.
import { NotFoundError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { PROVIDER_COLUMNS, toProvider, type DbProvider, type ProviderRow } from './rows.js';
import type { ProviderPatch } from './schema.js';

export class ProviderDao {
  constructor(private readonly sql: SqlClient) {}

  async list(): Promise<ProviderRow[]> {
    const rows = await this.sql.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE deleted_at IS NULL ORDER BY slug`);
    return rows.map(toProvider);
  }

  /** @throws NotFoundError */
  async getBySlug(slug: string): Promise<ProviderRow> {
    return providerBySlug(this.sql, slug);
  }

  /** Changes what the patch names; a value equal to the stored one writes nothing. @throws NotFoundError */
  async update(slug: string, patch: ProviderPatch, actor: string): Promise<ProviderRow> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.query<DbProvider>(
        `SELECT ${PROVIDER_COLUMNS} FROM providers WHERE slug = $1 AND deleted_at IS NULL FOR UPDATE`,
        [slug],
      );
      const current = rows[0];
      if (!current) throw new NotFoundError('provider', slug);
      if (patch.strategy === undefined || patch.strategy === current.default_strategy) return toProvider(current);
      const updated = await tx.query<DbProvider>(
        `UPDATE providers SET default_strategy = $1, updated_by = $2 WHERE id = $3 RETURNING ${PROVIDER_COLUMNS}`,
        [patch.strategy, actor, current.id],
      );
      await insertAudit(tx, [
        {
          keyId: null,
          action: 'config_set',
          actor,
          metadata: { name: `providers.${current.slug}.strategy`, value: patch.strategy, previous: current.default_strategy },
        },
      ]);
      return toProvider(updated[0]!);
    });
  }
}

/** The active provider with this slug. @throws NotFoundError */
export async function providerBySlug(sql: SqlClient, slug: string): Promise<ProviderRow> {
  const rows = await sql.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE slug = $1 AND deleted_at IS NULL`, [slug]);
  const row = rows[0];
  if (!row) throw new NotFoundError('provider', slug);
  return toProvider(row);
}
