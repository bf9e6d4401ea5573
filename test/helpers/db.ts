// Isolated databases for tests. Every test file gets its own: a fresh PostgreSQL database (CREATE DATABASE
// kp_test_<random>, dropped afterwards; a fresh schema when the role may not create databases) or an in-memory PGlite.
// PostgreSQL is used when DATABASE_URL (postgres://) is set or 127.0.0.1:5432 answers. When it does not, its suites
// are skipped with a printed notice, unless KEYPOOL_REQUIRE_SERVICES=1 (CI), which makes them fail instead.
import { randomBytes } from 'node:crypto';
import { describe, it } from 'vitest';
import { openPglite, type PgliteClient } from '../../src/stores/pglite-client.js';
import { openPostgres, type PostgresClient } from '../../src/stores/postgres-client.js';
import { migrate } from '../../src/stores/migrate.js';
import type { SqlClient } from '../../src/stores/sql-client.js';

const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test';

export interface PostgresProbe {
  readonly available: boolean;
  /** Server to create test databases on. */
  readonly adminUrl: string;
  /** Why it is unavailable. */
  readonly reason: string | null;
}

export interface TestDatabase {
  readonly client: SqlClient;
  /** Connection URL (PostgreSQL) for opening more clients to the same database; null for PGlite. */
  readonly url: string | null;
  /** Search path to pass to further clients when isolated by schema. */
  readonly searchPath: string | null;
  /** Opens another client to the same database (PostgreSQL only). */
  openAnother(options?: { max?: number }): PostgresClient;
  /** Closes the client and drops what was created. */
  drop(): Promise<void>;
}

function adminUrl(): string {
  const url = process.env.DATABASE_URL?.trim();
  return url && /^postgres(ql)?:\/\//.test(url) ? url : DEFAULT_ADMIN_URL;
}

async function probe(): Promise<PostgresProbe> {
  const url = adminUrl();
  const client = openPostgres({ url, max: 1, connectTimeoutSec: 3 });
  try {
    await client.query('SELECT 1');
    return { available: true, adminUrl: url, reason: null };
  } catch (error) {
    return { available: false, adminUrl: url, reason: (error as Error).message };
  } finally {
    await client.close().catch(() => undefined);
  }
}

export const postgresProbe: PostgresProbe = await probe();

export function servicesRequired(): boolean {
  return process.env.KEYPOOL_REQUIRE_SERVICES === '1';
}

/** describe() for suites that need PostgreSQL: runs, skips with a notice, or fails under KEYPOOL_REQUIRE_SERVICES=1. */
export function describePostgres(name: string, body: () => void): void {
  if (postgresProbe.available) {
    describe(name, body);
    return;
  }
  if (servicesRequired()) {
    describe(name, () => {
      it('needs PostgreSQL (KEYPOOL_REQUIRE_SERVICES=1)', () => {
        throw new Error(`PostgreSQL at ${redact(postgresProbe.adminUrl)} is not reachable: ${postgresProbe.reason ?? 'unknown'}`);
      });
    });
    return;
  }
  console.warn(`[keypool tests] skipping "${name}": PostgreSQL at ${redact(postgresProbe.adminUrl)} not reachable (${postgresProbe.reason ?? 'unknown'})`);
  describe.skip(name, body);
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

function randomName(): string {
  return `kp_test_${randomBytes(6).toString('hex')}`;
}

/** A fresh PostgreSQL database (or schema), optionally migrated. */
export async function createPostgresDatabase(options: { migrate?: boolean; max?: number } = {}): Promise<TestDatabase> {
  const admin = openPostgres({ url: postgresProbe.adminUrl, max: 1 });
  const name = randomName();
  let url: string;
  let searchPath: string | null = null;
  let dropSql: string;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    const parsed = new URL(postgresProbe.adminUrl);
    parsed.pathname = `/${name}`;
    url = parsed.toString();
    dropSql = `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`;
  } catch (error) {
    // No CREATEDB privilege: isolate in a schema of the given database instead.
    if ((error as { code?: string }).code !== '42501') throw error;
    await admin.query(`CREATE SCHEMA ${name}`);
    url = postgresProbe.adminUrl;
    searchPath = name;
    dropSql = `DROP SCHEMA IF EXISTS ${name} CASCADE`;
  }
  const openAnother = (more: { max?: number } = {}): PostgresClient =>
    openPostgres({ url, max: more.max ?? 4, ...(searchPath ? { searchPath } : {}) });
  const client = openAnother({ max: options.max ?? 4 });
  if (options.migrate !== false) await migrate(client);
  return {
    client,
    url,
    searchPath,
    openAnother,
    async drop() {
      await client.close().catch(() => undefined);
      try {
        await admin.query(dropSql);
      } finally {
        await admin.close();
      }
    },
  };
}

/** A fresh in-memory PGlite, optionally migrated. */
export async function createPgliteDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase & { client: PgliteClient }> {
  const client = await openPglite('memory://');
  if (options.migrate !== false) await migrate(client);
  return {
    client,
    url: null,
    searchPath: null,
    openAnother() {
      throw new Error('an in-memory PGlite has no second connection; use the socket share');
    },
    async drop() {
      await client.close();
    },
  };
}
