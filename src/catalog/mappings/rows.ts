// Priority mapping rows as the DAO returns them, and their mapping from SQL.
import type { ActiveWindow, Weekday } from '../../core/priority/index.js';
import type { MatchType } from '../../core/types.js';

export interface MappingRow {
  readonly id: string;
  readonly pattern: string;
  readonly matchType: MatchType;
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  readonly tenantType: 'internal' | 'external' | null;
  readonly description: string | null;
  readonly enabled: boolean;
  /** null: the mapping always applies. */
  readonly window: ActiveWindow | null;
  readonly createdAt: Date;
}

export const MAPPING_COLUMNS =
  'id, pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description, enabled, window_days, window_start, window_end, window_timezone, created_at';

export interface DbMapping {
  id: string;
  pattern: string;
  match_type: MatchType;
  priority: number;
  tenant_id: string | null;
  tenant_name: string | null;
  tenant_type: 'internal' | 'external' | null;
  description: string | null;
  enabled: boolean;
  window_days: string[] | null;
  window_start: string | null;
  window_end: string | null;
  window_timezone: string | null;
  created_at: Date;
}

export function toMapping(row: DbMapping): MappingRow {
  return {
    id: row.id,
    pattern: row.pattern,
    matchType: row.match_type,
    priority: row.priority,
    tenantId: row.tenant_id,
    tenantName: row.tenant_name,
    tenantType: row.tenant_type,
    description: row.description,
    enabled: row.enabled,
    window: toWindow(row),
    createdAt: row.created_at,
  };
}

function toWindow(row: DbMapping): ActiveWindow | null {
  if (row.window_days === null || row.window_start === null || row.window_end === null || row.window_timezone === null) return null;
  return { days: row.window_days as Weekday[], start: row.window_start, end: row.window_end, timezone: row.window_timezone };
}

/** The four window columns' values, in MAPPING_COLUMNS order (all null for no window). */
export function windowColumns(window: ActiveWindow | null | undefined): [string[] | null, string | null, string | null, string | null] {
  if (window == null) return [null, null, null, null];
  return [[...window.days], window.start, window.end, window.timezone];
}
