// Token prices (token_prices, migration 0010) as the DAO returns them, and their mapping from SQL.

export interface PriceRow {
  readonly providerSlug: string;
  /** Exact model name, a `prefix*` or `*` (src/core/usage-cost.ts). */
  readonly model: string;
  readonly inputUsdPerMTok: number;
  readonly outputUsdPerMTok: number;
  /** null = the input price. */
  readonly cachedInputUsdPerMTok: number | null;
  /** null = the input price. */
  readonly cacheCreationUsdPerMTok: number | null;
  readonly updatedAt: Date;
}

export const PRICE_COLUMNS =
  'provider_slug, model, input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok, cache_creation_usd_per_mtok, updated_at';

export interface DbPrice {
  provider_slug: string;
  model: string;
  input_usd_per_mtok: string | number;
  output_usd_per_mtok: string | number;
  cached_input_usd_per_mtok: string | number | null;
  cache_creation_usd_per_mtok: string | number | null;
  updated_at: Date;
}

export function toPrice(row: DbPrice): PriceRow {
  const optional = (value: string | number | null) => (value === null ? null : Number(value));
  return {
    providerSlug: row.provider_slug,
    model: row.model,
    inputUsdPerMTok: Number(row.input_usd_per_mtok),
    outputUsdPerMTok: Number(row.output_usd_per_mtok),
    cachedInputUsdPerMTok: optional(row.cached_input_usd_per_mtok),
    cacheCreationUsdPerMTok: optional(row.cache_creation_usd_per_mtok),
    updatedAt: row.updated_at,
  };
}
