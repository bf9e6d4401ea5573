// Provider rows as the DAO returns them, and their mapping from SQL.
import type { AuthStyle, RateLimitDialect, Strategy } from '../../core/types.js';

export interface ProviderRow {
  readonly id: string;
  readonly slug: string;
  readonly displayName: string;
  readonly authStyle: AuthStyle;
  readonly rateLimitDialect: RateLimitDialect;
  readonly defaultStrategy: Strategy;
  /**
   * Keep the provider's cooldowns and reported limits per model for every request of this pool (migration 0008), which
   * makes the gateway buffer its request bodies to read the model; false = only pools with a `models` list do.
   */
  readonly perModelState: boolean;
}

export const PROVIDER_COLUMNS = 'id, slug, display_name, auth_style, rate_limit_dialect, default_strategy, per_model_state';

export interface DbProvider {
  id: string;
  slug: string;
  display_name: string;
  auth_style: AuthStyle;
  rate_limit_dialect: RateLimitDialect;
  default_strategy: Strategy;
  per_model_state: boolean;
}

export function toProvider(row: DbProvider): ProviderRow {
  return {
    id: row.id,
    slug: row.slug,
    displayName: row.display_name,
    authStyle: row.auth_style,
    rateLimitDialect: row.rate_limit_dialect,
    defaultStrategy: row.default_strategy,
    perModelState: row.per_model_state === true,
  };
}
