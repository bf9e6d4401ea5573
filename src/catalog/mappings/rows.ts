// Priority mapping rows as the DAO returns them, and their mapping from SQL.
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
  readonly createdAt: Date;
}

export const MAPPING_COLUMNS = 'id, pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description, enabled, created_at';

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
    createdAt: row.created_at,
  };
}
