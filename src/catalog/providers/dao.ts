// Providers: the upstream API families, one pool each (seeded by sql/seed/providers.sql). Operators change a
// provider's default strategy and its per-model state switch; each change is a config_set audit row naming the
// provider and the setting.
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
      const changes: { column: string; name: string; value: string | boolean; previous: string | boolean }[] = [];
      if (patch.strategy !== undefined && patch.strategy !== current.default_strategy) {
        changes.push({ column: 'default_strategy', name: 'strategy', value: patch.strategy, previous: current.default_strategy });
      }
      if (patch.perModelState !== undefined && patch.perModelState !== current.per_model_state) {
        changes.push({ column: 'per_model_state', name: 'per_model_state', value: patch.perModelState, previous: current.per_model_state });
      }
      if (changes.length === 0) return toProvider(current);
      const sets = changes.map((change, i) => `${change.column} = $${i + 1}`).join(', ');
      const updated = await tx.query<DbProvider>(
        `UPDATE providers SET ${sets}, updated_by = $${changes.length + 1} WHERE id = $${changes.length + 2} RETURNING ${PROVIDER_COLUMNS}`,
        [...changes.map((change) => change.value), actor, current.id],
      );
      await insertAudit(
        tx,
        changes.map((change) => ({
          keyId: null,
          action: 'config_set' as const,
          actor,
          metadata: { name: `providers.${current.slug}.${change.name}`, value: change.value, previous: change.previous },
        })),
      );
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
