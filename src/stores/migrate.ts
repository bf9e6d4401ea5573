// Applies sql/migrations/NNNN_name.sql in order, records each in schema_migrations, then runs the idempotent seeds
// in sql/seed/ (sorted by name). Everything pending runs in ONE transaction under a transaction-scoped advisory
// lock, so replicas starting together apply each migration exactly once (the loser waits, then finds nothing to do)
// and a failing migration leaves the schema as it was. An applied migration whose file changed is refused.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SqlClient } from './sql-client.js';

/** Arbitrary constant shared by every keypool process ("keyp" in ASCII). */
export const MIGRATION_LOCK_ID = 0x6b657970;

const MIGRATION_FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  /** '0001' */
  readonly version: string;
  /** 'init' */
  readonly name: string;
  readonly sql: string;
  /** sha256 of the file, hex. */
  readonly checksum: string;
  /** '0001_init.sql' */
  readonly file: string;
}

export interface MigrateOptions {
  /** Directory holding migrations/ and seed/; default: the repository's sql/ (found from this module upwards). */
  readonly sqlDir?: string | undefined;
  /** Run sql/seed/*.sql after the migrations (default true). */
  readonly seed?: boolean | undefined;
}

export interface MigrateResult {
  /** File names applied by this call, in order ('0001_init.sql'). */
  readonly applied: readonly string[];
  /** File names that were already recorded. */
  readonly alreadyApplied: readonly string[];
  /** Seed files run. */
  readonly seeded: readonly string[];
}

export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

/** The sql/ directory next to package.json: works from src/stores (tests) and dist/src/stores (built). */
export function findSqlDir(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = resolve(from);
  for (;;) {
    const candidate = join(dir, 'sql');
    if (existsSync(join(candidate, 'migrations'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new MigrationError(`cannot find sql/migrations above ${from}`);
    dir = parent;
  }
}

export async function loadMigrations(sqlDir: string = findSqlDir()): Promise<MigrationFile[]> {
  const dir = join(sqlDir, 'migrations');
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const match = MIGRATION_FILE.exec(name);
    if (!match) throw new MigrationError(`migration file name must look like 0001_name.sql: ${name}`);
    const sql = await readFile(join(dir, name), 'utf8');
    const version = match[1]!;
    if (files.some((file) => file.version === version)) throw new MigrationError(`two migrations share version ${version}`);
    files.push({ version, name: match[2]!, sql, checksum: sha256(sql), file: name });
  }
  return files;
}

async function loadSeeds(sqlDir: string): Promise<Array<{ name: string; sql: string }>> {
  const dir = join(sqlDir, 'seed');
  if (!existsSync(dir)) return [];
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  return Promise.all(names.map(async (name) => ({ name, sql: await readFile(join(dir, name), 'utf8') })));
}

export async function migrate(client: SqlClient, options: MigrateOptions = {}): Promise<MigrateResult> {
  const sqlDir = options.sqlDir ?? findSqlDir();
  const migrations = await loadMigrations(sqlDir);
  const seeds = options.seed === false ? [] : await loadSeeds(sqlDir);
  return client.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    TEXT PRIMARY KEY,
      name       TEXT NOT NULL,
      checksum   TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`);
    const recorded = await tx.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migrations');
    const known = new Map(recorded.map((row) => [row.version, row.checksum]));
    const applied: string[] = [];
    const alreadyApplied: string[] = [];
    for (const migration of migrations) {
      const checksum = known.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new MigrationError(
            `migration ${migration.version}_${migration.name} was changed after it was applied; add a new migration instead`,
          );
        }
        alreadyApplied.push(migration.file);
        continue;
      }
      try {
        await tx.exec(migration.sql);
      } catch (error) {
        throw new MigrationError(`migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`, { cause: error });
      }
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      applied.push(migration.file);
    }
    for (const seed of seeds) {
      try {
        await tx.exec(seed.sql);
      } catch (error) {
        throw new MigrationError(`seed ${seed.name} failed: ${(error as Error).message}`, { cause: error });
      }
    }
    return { applied, alreadyApplied, seeded: seeds.map((seed) => seed.name) };
  });
}

/** Migration files ('0001_init.sql') present on disk but not recorded in the database (CLI pre-check, health). */
export async function pendingMigrations(client: SqlClient, sqlDir: string = findSqlDir()): Promise<string[]> {
  const migrations = await loadMigrations(sqlDir);
  const exists = await client.query<{ present: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (!exists[0]?.present) return migrations.map((migration) => migration.file);
  const recorded = new Set((await client.query<{ version: string }>('SELECT version FROM schema_migrations')).map((row) => row.version));
  return migrations.filter((migration) => !recorded.has(migration.version)).map((migration) => migration.file);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Applies examples/seed-demo.sql (demo priority mappings, priority matching on). Idempotent. Demo accounts are not
 * in it (their keys must be encrypted): add them through ConfigRepository.accounts.create.
 */
export async function applyDemoSeed(client: SqlClient, sqlDir: string = findSqlDir()): Promise<void> {
  const file = join(dirname(sqlDir), 'examples', 'seed-demo.sql');
  await client.exec(await readFile(file, 'utf8'));
}
