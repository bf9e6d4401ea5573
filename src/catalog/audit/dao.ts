// The append-only audit log: its SQL. Every DAO appends its audit rows through insertAudit, in its own transaction.
import { InvalidInputError } from '../../stores/errors.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { isUuid } from '../rules.js';
import { MAX_BATCH_ROWS } from '../sql.js';
import { toAudit, type AuditEntry, type AuditRow, type DbAudit } from './rows.js';

export interface AuditFilter {
  readonly keyId?: string | undefined;
  readonly action?: AuditRow['action'] | undefined;
  /** Inclusive lower bound on created_at. */
  readonly since?: Date | undefined;
  /** Page size, 1..1000 (default 100). */
  readonly limit?: number | undefined;
  /** nextCursor of the previous page. */
  readonly cursor?: string | undefined;
}

export interface AuditPage {
  /** Newest first. */
  readonly rows: readonly AuditRow[];
  /** Pass as `cursor` for the next (older) page; null when this was the last. */
  readonly nextCursor: string | null;
}

export class AuditDao {
  constructor(private readonly sql: SqlClient) {}

  /** Appends rows (request-path denials, ...). Entries with a keyId that is not a UUID are stored with key_id NULL. */
  async append(entries: readonly AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await insertAudit(this.sql, entries);
  }

  /** Newest first, keyset-paginated. */
  async list(filter: AuditFilter = {}): Promise<AuditPage> {
    const limit = Math.min(Math.max(Math.trunc(filter.limit ?? 100), 1), 1000);
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.keyId !== undefined) {
      if (!isUuid(filter.keyId)) return { rows: [], nextCursor: null };
      params.push(filter.keyId);
      where.push(`key_id = $${params.length}`);
    }
    if (filter.action !== undefined) {
      params.push(filter.action);
      where.push(`action = $${params.length}`);
    }
    if (filter.since !== undefined) {
      params.push(filter.since);
      where.push(`created_at >= $${params.length}`);
    }
    if (filter.cursor !== undefined) {
      if (!isUuid(filter.cursor)) throw new InvalidInputError('cursor', 'cursor is not one this API returned');
      params.push(filter.cursor);
      where.push(`(created_at, id) < (SELECT created_at, id FROM api_key_audit_logs WHERE id = $${params.length})`);
    }
    params.push(limit + 1);
    const rows = await this.sql.query<DbAudit>(
      `SELECT id, key_id, action, actor, client_ip, metadata, occurrences, created_at FROM api_key_audit_logs
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, limit).map(toAudit);
    return { rows: page, nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
  }

  /**
   * Deletes rows created before `before` through keypool_prune_audit() (migration 0004: the one path the append-only
   * trigger lets a DELETE through), which also records an `audit_pruned` row by `actor`. Returns the rows deleted.
   */
  async prune(before: Date, actor: string): Promise<number> {
    const [row] = await this.sql.query<{ deleted: string | number }>('SELECT keypool_prune_audit($1::timestamptz, $2) AS deleted', [before, actor]);
    return Number(row?.deleted ?? 0);
  }
}

export type AuditInsert = Omit<AuditEntry, 'keyId'> & { readonly keyId: string | null };

/** Appends audit rows in batches; a keyId that is not a UUID is stored as NULL. */
export async function insertAudit(sql: SqlClient, entries: readonly AuditInsert[]): Promise<void> {
  for (let start = 0; start < entries.length; start += MAX_BATCH_ROWS) {
    const chunk = entries.slice(start, start + MAX_BATCH_ROWS);
    const params: unknown[] = [];
    const values = chunk.map((entry) => {
      params.push(
        isUuid(entry.keyId) ? entry.keyId : null,
        entry.action,
        entry.actor,
        entry.clientIp ?? null,
        JSON.stringify(entry.metadata ?? {}),
        entry.at ?? null,
        entry.occurrences ?? 1,
      );
      const n = params.length - 7;
      return `($${n + 1}::uuid, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}::text::jsonb, COALESCE($${n + 6}::timestamptz, now()), $${n + 7}::integer)`;
    });
    await sql.query(
      `INSERT INTO api_key_audit_logs (key_id, action, actor, client_ip, metadata, created_at, occurrences) VALUES ${values.join(', ')}`,
      params,
    );
  }
}
