// Providers: the upstream API families, one pool each (seeded by sql/seed/providers.sql).
import { NotFoundError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { PROVIDER_COLUMNS, toProvider, type DbProvider, type ProviderRow } from './rows.js';

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
}

/** The active provider with this slug. @throws NotFoundError */
export async function providerBySlug(sql: SqlClient, slug: string): Promise<ProviderRow> {
  const rows = await sql.query<DbProvider>(`SELECT ${PROVIDER_COLUMNS} FROM providers WHERE slug = $1 AND deleted_at IS NULL`, [slug]);
  const row = rows[0];
  if (!row) throw new NotFoundError('provider', slug);
  return toProvider(row);
}
