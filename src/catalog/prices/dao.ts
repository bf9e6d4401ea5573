// Token prices: their SQL. Writes are audited as config_set (name `token_price`) and reach every replica's snapshot
// through the change feed (migration 0010's trigger).
import { NotFoundError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { PRICE_COLUMNS, toPrice, type DbPrice, type PriceRow } from './rows.js';
import type { NewPrice } from './schema.js';

export class PriceDao {
  constructor(private readonly sql: SqlClient) {}

  /** Every price, by provider and model. */
  async list(): Promise<PriceRow[]> {
    const rows = await this.sql.query<DbPrice>(`SELECT ${PRICE_COLUMNS} FROM token_prices ORDER BY provider_slug, model`);
    return rows.map(toPrice);
  }

  /** Sets (creates or replaces) the price of one provider and model pattern; audited. */
  async set(price: NewPrice, actor: string): Promise<PriceRow> {
    return this.sql.transaction(async (tx) => {
      const before = await tx.query<DbPrice>(`SELECT ${PRICE_COLUMNS} FROM token_prices WHERE provider_slug = $1 AND model = $2 FOR UPDATE`, [
        price.providerSlug,
        price.model,
      ]);
      const rows = await tx.query<DbPrice>(
        `INSERT INTO token_prices (provider_slug, model, input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok,
            cache_creation_usd_per_mtok, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (provider_slug, model) DO UPDATE SET input_usd_per_mtok = EXCLUDED.input_usd_per_mtok,
           output_usd_per_mtok = EXCLUDED.output_usd_per_mtok, cached_input_usd_per_mtok = EXCLUDED.cached_input_usd_per_mtok,
           cache_creation_usd_per_mtok = EXCLUDED.cache_creation_usd_per_mtok, updated_by = EXCLUDED.updated_by
         RETURNING ${PRICE_COLUMNS}`,
        [price.providerSlug, price.model, price.inputUsdPerMTok, price.outputUsdPerMTok, price.cachedInputUsdPerMTok, price.cacheCreationUsdPerMTok, actor],
      );
      const row = toPrice(rows[0]!);
      const previous = before[0] === undefined ? null : auditValue(toPrice(before[0]));
      await insertAudit(tx, [{ keyId: null, action: 'config_set', actor, metadata: { name: 'token_price', value: auditValue(row), previous } }]);
      return row;
    });
  }

  /** @throws NotFoundError */
  async delete(providerSlug: string, model: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const rows = await tx.query<DbPrice>(`DELETE FROM token_prices WHERE provider_slug = $1 AND model = $2 RETURNING ${PRICE_COLUMNS}`, [providerSlug, model]);
      if (rows.length === 0) throw new NotFoundError('price', `${providerSlug}/${model}`);
      await insertAudit(tx, [{ keyId: null, action: 'config_set', actor, metadata: { name: 'token_price', value: null, previous: auditValue(toPrice(rows[0]!)) } }]);
    });
  }
}

function auditValue(row: PriceRow): Record<string, unknown> {
  const { updatedAt: _unused, ...value } = row;
  return value;
}
