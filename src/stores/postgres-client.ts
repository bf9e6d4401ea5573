// SqlClient over PostgreSQL (porsager/postgres): a bounded pool, LISTEN on a dedicated connection that reconnects.
import postgres from 'postgres';
import { parseInt8, type SqlClient } from './sql-client.js';

export interface PostgresClientOptions {
  /** postgres://user:pass@host:port/db?sslmode=...; or give host/port/database/user instead. */
  readonly url?: string | undefined;
  readonly host?: string | undefined;
  readonly port?: number | undefined;
  readonly database?: string | undefined;
  readonly user?: string | undefined;
  /** Pool size (connections). The LISTEN connection comes on top. Default 10. */
  readonly max?: number | undefined;
  /** Seconds to wait for a connection to open. Default 10. */
  readonly connectTimeoutSec?: number | undefined;
  /** Seconds an idle pooled connection is kept. Default 30. */
  readonly idleTimeoutSec?: number | undefined;
  /** Named prepared statements (default true). A shared PGlite uses false: its statements would outlive the CLI. */
  readonly prepare?: boolean | undefined;
  /** Sent as application_name (also carries the shared-PGlite token). */
  readonly applicationName?: string | undefined;
  /** search_path for every connection (tests isolate themselves in a schema when they cannot create databases). */
  readonly searchPath?: string | undefined;
}

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type TxSql = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

export function openPostgres(options: PostgresClientOptions): PostgresClient {
  const settings: postgres.Options<Record<string, postgres.PostgresType>> = {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSec ?? 10,
    idle_timeout: options.idleTimeoutSec ?? 30,
    prepare: options.prepare ?? true,
    onnotice: () => undefined,
    types: {
      // int8 (count(*), bigint counters) as number when exact, like the PGlite client.
      int8: { to: 20, from: [20], serialize: (value: unknown) => String(value), parse: parseInt8 },
    },
    connection: {
      ...(options.applicationName ? { application_name: options.applicationName } : {}),
      ...(options.searchPath ? { search_path: options.searchPath } : {}),
    },
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.database !== undefined ? { database: options.database } : {}),
    ...(options.user !== undefined ? { user: options.user } : {}),
  };
  const sql = options.url ? postgres(options.url, settings) : postgres(settings);
  return new PostgresClient(sql as Sql);
}

export class PostgresClient implements SqlClient {
  readonly kind = 'postgres' as const;
  readonly #sql: Sql;
  #closed = false;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    return runQuery<T>(this.#sql, text, params);
  }

  async exec(multiStatementSql: string): Promise<void> {
    await this.#sql.unsafe(multiStatementSql).simple();
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return (await this.#sql.begin((tx) => fn(new PostgresTxClient(tx, this)))) as T;
  }

  async listen(channel: string, onNotify: (payload: string) => void, onListen?: () => void): Promise<() => Promise<void>> {
    const { unlisten } = await this.#sql.listen(channel, (payload) => onNotify(payload), onListen);
    return async () => {
      await unlisten().catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#sql.end({ timeout: 5 });
  }
}

/** The client handed to transaction callbacks: same interface, bound to the transaction's connection. */
class PostgresTxClient implements SqlClient {
  readonly kind = 'postgres' as const;

  constructor(
    private readonly tx: TxSql,
    private readonly parent: PostgresClient,
  ) {}

  query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    return runQuery<T>(this.tx, text, params);
  }

  async exec(multiStatementSql: string): Promise<void> {
    await this.tx.unsafe(multiStatementSql).simple();
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return fn(this);
  }

  listen(channel: string, onNotify: (payload: string) => void, onListen?: () => void): Promise<() => Promise<void>> {
    return this.parent.listen(channel, onNotify, onListen);
  }

  async close(): Promise<void> {
    throw new Error('close() called on a transaction client');
  }
}

async function runQuery<T>(sql: Sql | TxSql, text: string, params: readonly unknown[]): Promise<T[]> {
  const rows = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[]);
  return Array.from(rows) as T[];
}
