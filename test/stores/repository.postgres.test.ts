import { expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/stores/migrate.js';
import { createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import { repositoryContract } from './repository.contract.js';

const extra = new Map<TestDatabase, SqlClient>();

describePostgres('PostgreSQL', () => {
  repositoryContract({
    name: 'postgres',
    open: async () => {
      const db = await createPostgresDatabase();
      const drop = db.drop.bind(db);
      return {
        ...db,
        async drop() {
          await extra.get(db)?.close();
          await drop();
        },
      };
    },
    // A second pool: writes really race on separate connections.
    secondWriter: (db) => {
      let client = extra.get(db);
      if (!client) {
        client = db.openAnother({ max: 4 });
        extra.set(db, client);
      }
      return client;
    },
  });
});

describePostgres('PostgreSQL migrations', () => {
  it('two replicas migrating a fresh database at once apply each migration exactly once (advisory lock)', async () => {
    const db = await createPostgresDatabase({ migrate: false });
    const second = db.openAnother({ max: 1 });
    try {
      const [a, b] = await Promise.all([migrate(db.client), migrate(second)]);
      const files = (await loadMigrations()).map((migration) => migration.file);
      expect(files[0]).toBe('0001_init.sql');
      // One of the two applied everything; the other waited on the lock and found nothing left to do.
      expect([a.applied, b.applied].sort((x, y) => x.length - y.length)).toEqual([[], files]);
      const rows = await db.client.query<{ n: number }>('SELECT count(*)::int AS n FROM providers');
      expect(rows[0]!.n).toBe(6);
    } finally {
      await second.close();
      await db.drop();
    }
  });
});
