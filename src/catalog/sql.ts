// SQL plumbing shared by every entity DAO: the one UPDATE builder, the mapping of constraint violations to typed
// errors, and batch sizing.
import { ConflictError, InvalidInputError, NotFoundError, sqlState, violatedConstraint } from '../stores/errors.js';
import type { SqlClient } from '../stores/sql-client.js';
import { isUuid } from './rules.js';

/** Rows per multi-row INSERT: keeps statements well under PostgreSQL's 65,535 parameters. */
export const MAX_BATCH_ROWS = 1_000;

/** Collects `column = $n` assignments for one row's UPDATE (updated_by and the id come last). */
export class UpdateBuilder {
  private readonly assignments: string[] = [];
  private readonly params: unknown[] = [];

  get isEmpty(): boolean {
    return this.assignments.length === 0;
  }

  set(column: string, value: unknown, cast = ''): void {
    this.params.push(value);
    this.assignments.push(`${column} = $${this.params.length}${cast}`);
  }

  /** The statement and its parameters, for `sql.query(...statement)`. */
  statement(table: string, actor: string, id: string, returning?: string): [string, unknown[]] {
    const params = [...this.params, actor, id];
    const text = `UPDATE ${table} SET ${this.assignments.join(', ')}, updated_by = $${params.length - 1} WHERE id = $${params.length}`;
    return [returning === undefined ? text : `${text} RETURNING ${returning}`, params];
  }
}

/**
 * Runs a write and turns constraint violations into typed errors: a unique index into the ConflictError the caller
 * names for it, a CHECK into InvalidInputError naming the column.
 */
export async function mapErrors<T>(fn: () => Promise<T>, conflicts: Readonly<Record<string, () => Error>>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const state = sqlState(error);
    const constraint = violatedConstraint(error);
    if (state === '23505') {
      const make = constraint !== undefined ? conflicts[constraint] : undefined;
      throw make ? make() : new ConflictError('row', 'id', 'a row with these values already exists');
    }
    if (state === '23514') throw new InvalidInputError(checkField(constraint), `value out of range (${constraint ?? 'check constraint'})`);
    throw error;
  }
}

/** provider_accounts_rpm_limit_check -> rpmLimit */
function checkField(constraint: string | undefined): string {
  const match = constraint ? /^(?:provider_accounts|system_api_keys|api_key_priority_mappings|api_key_priority_config|tenants)_(.+)_check$/.exec(constraint) : null;
  const column = match?.[1] ?? 'value';
  const renamed = column === 'priority_tier' ? 'tier' : column;
  return renamed.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** How to find one active row of an entity by reference (id, or name where names are references). */
export interface RowLookup {
  /** Entity name for errors (`account`). */
  readonly entity: string;
  /** FROM clause, naming the entity's own table with `alias`. */
  readonly from: string;
  readonly alias: string;
  readonly columns: string;
  /** Further conditions on joined tables (e.g. the provider is not deleted). */
  readonly alsoWhere?: string;
  /** Names are references too (unique among active rows, or the lookup reports the ambiguity). */
  readonly byName: boolean;
}

/**
 * The active row `ref` names: a UUID is an id; any other text a name where `byName`. FOR UPDATE locks the entity's
 * row for the caller's transaction. @throws NotFoundError, ConflictError (a name several active rows share)
 */
export async function activeRowByRef<T>(sql: SqlClient, lookup: RowLookup, ref: string, forUpdate: boolean): Promise<T> {
  const byId = isUuid(ref);
  if (!byId && !lookup.byName) throw new NotFoundError(lookup.entity, ref);
  const rows = await sql.query<T>(
    `SELECT ${lookup.columns} FROM ${lookup.from}
     WHERE ${lookup.alias}.${byId ? 'id' : 'name'} = $1 AND ${lookup.alias}.deleted_at IS NULL ${lookup.alsoWhere ? `AND ${lookup.alsoWhere}` : ''}
     LIMIT 2 ${forUpdate ? `FOR UPDATE OF ${lookup.alias}` : ''}`,
    [ref],
  );
  if (rows.length === 0) throw new NotFoundError(lookup.entity, ref);
  if (rows.length > 1) throw new ConflictError(lookup.entity, 'name', `more than one ${lookup.entity} is named "${ref}": use its id`);
  return rows[0]!;
}
