// Priority mappings: their SQL.
import { validatePattern } from '../../core/priority/index.js';
import type { MatchType } from '../../core/types.js';
import { ConflictError, InvalidInputError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { activeRowByRef, mapErrors, UpdateBuilder, type RowLookup } from '../sql.js';
import { MAPPING_COLUMNS, toMapping, windowColumns, type DbMapping, type MappingRow } from './rows.js';
import { windowText } from './window.js';
import type { MappingPatch, NewMapping } from './schema.js';

export class MappingDao {
  constructor(private readonly sql: SqlClient) {}

  /** @throws InvalidInputError (pattern), ConflictError (same match type and pattern) */
  async create(input: NewMapping, actor: string): Promise<MappingRow> {
    checkPattern(input.matchType, input.pattern);
    return this.sql.transaction(async (tx) => {
      const rows = await mapErrors(
        () =>
          tx.query<DbMapping>(
            `INSERT INTO api_key_priority_mappings (pattern, match_type, priority, tenant_id, tenant_name, tenant_type, description,
                enabled, created_by, updated_by, window_days, window_start, window_end, window_timezone)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10::text[], $11, $12, $13) RETURNING ${MAPPING_COLUMNS}`,
            [
              input.pattern,
              input.matchType,
              input.priority,
              input.tenantId ?? null,
              input.tenantName ?? null,
              input.tenantType ?? null,
              input.description ?? null,
              input.enabled ?? true,
              actor,
              ...windowColumns(input.window),
            ],
          ),
        { api_key_priority_mappings_pattern_active_uq: () => mappingConflict(input.matchType) },
      );
      const row = toMapping(rows[0]!);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_created', actor, metadata: mappingAudit(row) }]);
      return row;
    });
  }

  /** Every active mapping, enabled or not, in created order. */
  async list(): Promise<MappingRow[]> {
    const rows = await this.sql.query<DbMapping>(
      `SELECT ${MAPPING_COLUMNS} FROM api_key_priority_mappings WHERE deleted_at IS NULL ORDER BY created_at, id`,
    );
    return rows.map(toMapping);
  }

  /** @throws NotFoundError */
  async get(id: string): Promise<MappingRow> {
    return toMapping(await mappingById(this.sql, id, false));
  }

  /** @throws NotFoundError, InvalidInputError (pattern), ConflictError */
  async update(id: string, patch: MappingPatch, actor: string): Promise<MappingRow> {
    return this.sql.transaction(async (tx) => {
      const current = await mappingById(tx, id, true);
      const matchType = patch.matchType ?? current.match_type;
      const pattern = patch.pattern ?? current.pattern;
      if (patch.matchType !== undefined || patch.pattern !== undefined) checkPattern(matchType, pattern);
      const columns: Array<[keyof NewMapping, string]> = [
        ['pattern', 'pattern'],
        ['matchType', 'match_type'],
        ['priority', 'priority'],
        ['tenantId', 'tenant_id'],
        ['tenantName', 'tenant_name'],
        ['tenantType', 'tenant_type'],
        ['description', 'description'],
        ['enabled', 'enabled'],
      ];
      const update = new UpdateBuilder();
      const fields: string[] = [];
      for (const [field, column] of columns) {
        const value = patch[field];
        if (value === undefined) continue;
        update.set(column, value);
        fields.push(field);
      }
      if (patch.window !== undefined) {
        const [days, start, end, timezone] = windowColumns(patch.window);
        update.set('window_days', days, '::text[]');
        update.set('window_start', start);
        update.set('window_end', end);
        update.set('window_timezone', timezone);
        fields.push('window');
      }
      if (update.isEmpty) return toMapping(current);
      const rows = await mapErrors(
        () => tx.query<DbMapping>(...update.statement('api_key_priority_mappings', actor, current.id, MAPPING_COLUMNS)),
        { api_key_priority_mappings_pattern_active_uq: () => mappingConflict(matchType) },
      );
      const row = toMapping(rows[0]!);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_updated', actor, metadata: { ...mappingAudit(row), fields } }]);
      return row;
    });
  }

  /** Soft delete. @throws NotFoundError */
  async softDelete(id: string, actor: string): Promise<void> {
    await this.sql.transaction(async (tx) => {
      const current = await mappingById(tx, id, true);
      await tx.query(`UPDATE api_key_priority_mappings SET deleted_at = now(), updated_by = $1 WHERE id = $2`, [actor, current.id]);
      await insertAudit(tx, [{ keyId: null, action: 'mapping_deleted', actor, metadata: mappingAudit(toMapping(current)) }]);
    });
  }
}

const MAPPING_LOOKUP: RowLookup = {
  entity: 'mapping',
  from: 'api_key_priority_mappings m',
  alias: 'm',
  columns: MAPPING_COLUMNS,
  byName: false,
};

function mappingById(sql: SqlClient, id: string, forUpdate: boolean): Promise<DbMapping> {
  return activeRowByRef<DbMapping>(sql, MAPPING_LOOKUP, id, forUpdate);
}

function checkPattern(matchType: MatchType, pattern: string): void {
  const problem = validatePattern(matchType, pattern);
  if (problem !== null) throw new InvalidInputError('pattern', problem);
}

function mappingConflict(matchType: MatchType): ConflictError {
  return new ConflictError('mapping', 'pattern', `a ${matchType} mapping for this pattern and window already exists`);
}

function mappingAudit(row: MappingRow): Record<string, unknown> {
  return {
    mappingId: row.id,
    matchType: row.matchType,
    pattern: row.pattern,
    priority: row.priority,
    tenantId: row.tenantId,
    enabled: row.enabled,
    window: row.window === null ? null : windowText(row.window),
  };
}
