// What the catalog hands the snapshot compiler (src/catalog/repository.ts -> src/snapshot/compile.ts).
import type { PrioritySettings } from '../core/types.js';
import type { StoredAccount } from './accounts/rows.js';
import type { StoredKey } from './keys/rows.js';
import type { MappingRow } from './mappings/rows.js';
import type { ProviderRow } from './providers/rows.js';
import type { TenantRow } from './tenants/rows.js';
import type { PriceRow } from './prices/rows.js';

/** One consistent read of everything the compiled snapshot needs (soft-deleted rows excluded). */
export interface ConfigData {
  /** The database's clock at the time of the read. */
  readonly readAt: Date;
  /** config_version counter at the time of the read (bumped by every configuration write). */
  readonly configVersion: number;
  readonly providers: readonly ProviderRow[];
  /** Every non-deleted account of a non-deleted provider, any status, ordered by (provider, tier, name). */
  readonly accounts: readonly StoredAccount[];
  /** Every non-deleted key, active or revoked. */
  readonly keys: readonly StoredKey[];
  /** Every non-deleted mapping, enabled or not, in created order. */
  readonly mappings: readonly MappingRow[];
  readonly settings: PrioritySettings;
  /** Every tenant row (limits). Absent in data built by hand = none. */
  readonly tenants?: readonly TenantRow[];
  /** Every token price (token_prices). Absent in data built by hand = none. */
  readonly prices?: readonly PriceRow[];
}
