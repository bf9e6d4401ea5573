// Chooses and opens the configuration database from DATABASE_URL and the data directory:
//   postgres:// or postgresql://  -> PostgreSQL (bounded pool)
//   memory://                      -> in-memory PGlite (thrown away at exit)
//   unset                          -> embedded PGlite in <dataDir>/pgdata, shared between local processes:
//       a running `keypool serve` (role 'owner') serves it on a loopback socket (pglite-share.ts); any other
//       process finds <dataDir>/server.json and connects to that socket with the postgres client; with no live
//       owner, a process opens the directory itself under <dataDir>/pglite.lock (short CLI runs wait for each other).
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openPglite, type PgliteClient } from './pglite-client.js';
import { ensurePrivateDir, restrictTree } from './private-dir.js';
import { findLiveShare, processAlive, sharePglite, SHARE_APPLICATION_PREFIX, type PgliteShare, type ShareInfo } from './pglite-share.js';
import { openPostgres } from './postgres-client.js';
import type { SqlClient } from './sql-client.js';

export const PGLITE_SUBDIR = 'pgdata';
export const LOCK_FILE = 'pglite.lock';

export interface OpenStoreOptions {
  /** DATABASE_URL; undefined or empty = embedded PGlite in dataDir. */
  readonly databaseUrl?: string | undefined;
  /** KEYPOOL_DATA_DIR (default ./.keypool): PGlite files under pgdata/, plus server.json, pglite.lock, secrets.json. */
  readonly dataDir: string;
  /**
   * 'owner' (keypool serve): open the embedded database and serve it to other local processes; fails if another
   * live process already serves it. 'client' (CLI, tests; default): use the live owner's socket when there is one.
   */
  readonly role?: 'owner' | 'client' | undefined;
  /** PostgreSQL pool size. Default 10. */
  readonly poolMax?: number | undefined;
  /** How long to wait for another process's short hold of the embedded directory. Default 10 s. */
  readonly lockTimeoutMs?: number | undefined;
}

export type StoreMode = 'postgres' | 'pglite-memory' | 'pglite-disk' | 'pglite-shared';

export interface OpenedStore {
  readonly client: SqlClient;
  readonly mode: StoreMode;
  /** Human description for the startup log (never contains a password). */
  readonly where: string;
  /** The socket share when this process owns an embedded database with role 'owner'. */
  readonly share: PgliteShare | null;
}

export class StoreOpenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreOpenError';
  }
}

export async function openSqlClient(options: OpenStoreOptions): Promise<SqlClient> {
  return (await openStore(options)).client;
}

export async function openStore(options: OpenStoreOptions): Promise<OpenedStore> {
  const url = options.databaseUrl?.trim() || undefined;
  if (url !== undefined) {
    if (url === 'memory://') {
      const client = await openPglite('memory://');
      return { client, mode: 'pglite-memory', where: 'in-memory PGlite', share: null };
    }
    if (/^postgres(ql)?:\/\//i.test(url)) return openPostgresStore(url, options.poolMax ?? 10);
    throw new StoreOpenError('DATABASE_URL must start with postgres://, postgresql:// or be memory:// (unset = embedded store)');
  }
  return openEmbedded(options);
}

async function openPostgresStore(url: string, max: number): Promise<OpenedStore> {
  const client = openPostgres({ url, max });
  const where = `PostgreSQL ${redactUrl(url)}`;
  try {
    await client.query('SELECT 1');
  } catch (error) {
    await client.close().catch(() => undefined);
    throw new StoreOpenError(`cannot connect to ${where}: ${(error as Error).message}`, { cause: error });
  }
  return { client, mode: 'postgres', where, share: null };
}

async function openEmbedded(options: OpenStoreOptions): Promise<OpenedStore> {
  const role = options.role ?? 'client';
  const dataDir = options.dataDir;
  const pgdata = join(dataDir, PGLITE_SUBDIR);
  await ensurePrivateDir(dataDir);
  const deadline = Date.now() + (options.lockTimeoutMs ?? 10_000);
  for (;;) {
    const live = await findLiveShare(dataDir);
    if (live) {
      if (role === 'owner') {
        throw new StoreOpenError(`another keypool process (pid ${live.pid}) already serves ${pgdata}; stop it or use another KEYPOOL_DATA_DIR`);
      }
      const shared = await connectToShare(live, pgdata);
      if (shared) return shared;
    }
    const release = await tryLock(dataDir);
    if (release) {
      let client: PgliteClient;
      try {
        client = await openPglite(pgdata);
      } catch (error) {
        await release();
        throw new StoreOpenError(`cannot open the embedded database in ${pgdata}: ${(error as Error).message}`, { cause: error });
      }
      client.onClose(release);
      // Owner-only, including what PGlite just created (its files follow the umask, not the directory).
      await restrictTree(dataDir).catch(async (error: unknown) => {
        await client.close();
        throw new StoreOpenError(`cannot restrict the permissions of ${dataDir}: ${(error as Error).message}`, { cause: error });
      });
      if (role !== 'owner') return { client, mode: 'pglite-disk', where: `PGlite ${pgdata}`, share: null };
      const share = await sharePglite(client, dataDir).catch(async (error: unknown) => {
        await client.close();
        throw error;
      });
      return { client, mode: 'pglite-disk', where: `PGlite ${pgdata} (shared on ${share.host}:${share.port})`, share };
    }
    if (Date.now() >= deadline) {
      const holder = await lockHolder(dataDir);
      throw new StoreOpenError(
        `the embedded database ${pgdata} is in use by process ${holder ?? '?'} and is not shared; ` +
          `wait for it to finish, or remove ${join(dataDir, LOCK_FILE)} if that process is gone`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function connectToShare(info: ShareInfo, pgdata: string): Promise<OpenedStore | null> {
  const client = openPostgres({
    host: info.host,
    port: info.port,
    user: 'postgres',
    database: 'postgres',
    max: 1,
    prepare: false,
    connectTimeoutSec: 5,
    idleTimeoutSec: 0,
    applicationName: `${SHARE_APPLICATION_PREFIX}${info.token}`,
  });
  try {
    await client.query('SELECT 1');
  } catch {
    // The owner went away between the probe and now: fall back to opening the directory ourselves.
    await client.close().catch(() => undefined);
    return null;
  }
  return { client, mode: 'pglite-shared', where: `PGlite ${pgdata} via keypool process ${info.pid} (${info.host}:${info.port})`, share: null };
}

/** Takes <dataDir>/pglite.lock (O_EXCL, holding our pid); a lock left by a dead process is taken over. */
async function tryLock(dataDir: string): Promise<(() => Promise<void>) | null> {
  const file = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await lockHolder(dataDir);
    if (holder !== null && processAlive(holder)) return null;
    // No pid yet: another process may be between creating and writing the file; only an old one is stale.
    if (holder === null && (await ageMs(file)) < 5_000) return null;
    // Stale: its process is gone (or it crashed between creating and writing the file).
    await rm(file, { force: true });
  }
  return null;
}

async function ageMs(file: string): Promise<number> {
  try {
    return Date.now() - (await stat(file)).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

async function lockHolder(dataDir: string): Promise<number | null> {
  try {
    const pid = Number((await readFile(join(dataDir, LOCK_FILE), 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** postgres://user:secret@host/db -> postgres://user:***@host/db */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}
