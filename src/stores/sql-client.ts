// The one database port the stores use. Two implementations share it: PGlite (embedded, in-process WASM
// PostgreSQL) and PostgreSQL through porsager/postgres. Both run the same SQL files and return rows the same way:
// column names as written in SQL (snake_case), timestamptz as Date, json/jsonb as parsed values, int8 as number
// when it is a safe integer (else bigint), numeric as string, arrays as JS arrays.

export type SqlClientKind = 'pglite' | 'postgres';

export interface SqlClient {
  /** 'pglite' = this process owns an embedded database; 'postgres' = wire protocol (PostgreSQL, or a shared PGlite). */
  readonly kind: SqlClientKind;
  /** One statement with positional parameters ($1, $2, ...). Objects bound to jsonb need an explicit `$n::jsonb`. */
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements, no parameters (simple protocol): migrations and seeds. */
  exec(multiStatementSql: string): Promise<void>;
  /**
   * Runs fn inside BEGIN/COMMIT (ROLLBACK when fn throws). The tx client must be used for every statement of the
   * transaction; calling transaction() on it joins the same transaction (no savepoint).
   */
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel; onNotify gets each payload. Resolves once listening; the returned function unlistens.
   * onListen runs every time listening (re)starts: PostgreSQL uses a dedicated connection that reconnects by
   * itself, and notifications sent while it was down are lost, so a caller reloads on onListen. Embedded PGlite:
   * notifications committed by socket-share clients are forwarded too.
   */
  listen(channel: string, onNotify: (payload: string) => void, onListen?: () => void): Promise<() => Promise<void>>;
  /** Closes the pool / database. Idempotent. */
  close(): Promise<void>;
}

/** Parser for int8 values shared by both clients: number when exact, bigint beyond 2^53. */
export function parseInt8(text: string): number | bigint {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : BigInt(text);
}
