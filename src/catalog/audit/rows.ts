// Audit entries (what the request path and every operator write append) and rows as read back.
import type { AuditAction } from '../../core/types.js';

export interface AuditEntry {
  readonly keyId: string | null;
  readonly action: AuditAction;
  readonly actor: string;
  readonly clientIp?: string | null | undefined;
  readonly metadata?: Readonly<Record<string, unknown>> | undefined;
  /** Defaults to the database's now(). */
  readonly at?: Date | undefined;
  /** Requests this row stands for (identical denials aggregated in one flush window). Default 1. */
  readonly occurrences?: number | undefined;
}

export interface AuditRow extends Required<Omit<AuditEntry, 'at'>> {
  readonly id: string;
  readonly createdAt: Date;
}

export interface DbAudit {
  id: string;
  key_id: string | null;
  action: AuditRow['action'];
  actor: string;
  client_ip: string | null;
  metadata: Record<string, unknown>;
  occurrences: number;
  created_at: Date;
}

export function toAudit(row: DbAudit): AuditRow {
  return {
    id: row.id,
    keyId: row.key_id,
    action: row.action,
    actor: row.actor,
    clientIp: row.client_ip,
    metadata: row.metadata ?? {},
    occurrences: Number(row.occurrences ?? 1),
    createdAt: row.created_at,
  };
}
