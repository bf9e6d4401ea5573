// How the CLI reaches the catalog: the same environment as the service (src/config.ts), the same
// SQL client (embedded PGlite, the running server's shared PGlite, or PostgreSQL) and the same repository.
// Loaded lazily by commands that need it, so `--help` and bad flags never start a database.
import type { KeypoolConfig } from '../config.js';
import type { SqlClient } from '../stores/sql-client.js';
import type { CliContext } from './command.js';
import type { ConfigRepository } from '../catalog/repository.js';

type Env = Readonly<Record<string, string | undefined>>;

export interface CliStore {
  readonly sql: SqlClient;
  readonly repo: ConfigRepository;
  close(): Promise<void>;
}

/** The schema is absent or behind the code: the operator must run `keypool migrate` (exit 1). */
export class SchemaMissingError extends Error {
  constructor(detail: string) {
    super(`${detail}: run \`keypool migrate\` first`);
    this.name = 'SchemaMissingError';
  }
}

/** Opens the store for a command that reads or writes configuration; the schema must be current. */
export async function openCliStore(env: Env): Promise<CliStore> {
  const config = await loadCliConfig(env);
  const [{ loadSecrets }, { ConfigRepository: Repository }, { pendingMigrations }] = await Promise.all([
    import('../secrets/bootstrap.js'),
    import('../catalog/repository.js'),
    import('../stores/migrate.js'),
  ]);
  const secrets = await loadSecrets({
    encryptionKeys: config.encryptionKeys,
    keyPepper: config.keyPepper,
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
  });
  const sql = await openSql(config);
  try {
    const pending = await pendingMigrations(sql);
    if (pending.length > 0) {
      throw new SchemaMissingError(
        pending[0]?.startsWith('0001_') ? 'the database has no keypool schema' : `pending migrations: ${pending.join(', ')}`,
      );
    }
  } catch (error) {
    await sql.close().catch(() => undefined);
    throw error;
  }
  const repo = new Repository(sql, { keyring: secrets.keyring, pepper: secrets.pepper });
  return { sql, repo, close: () => sql.close() };
}

/** `keypool migrate`: applies what is pending; returns the file names applied (empty when up to date). */
export async function runMigrations(context: CliContext): Promise<string[]> {
  const { migrate } = await import('../stores/migrate.js');
  const sql = await openSql(await loadCliConfig(context.env));
  try {
    const result = await migrate(sql);
    return [...result.applied];
  } finally {
    await sql.close().catch(() => undefined);
  }
}

async function loadCliConfig(env: Env): Promise<KeypoolConfig> {
  const { loadConfig } = await import('../config.js');
  return loadConfig({}, env);
}

async function openSql(config: KeypoolConfig): Promise<SqlClient> {
  const { openSqlClient } = await import('../stores/open-store.js');
  return openSqlClient({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
}
