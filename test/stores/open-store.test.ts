// Choosing the store from DATABASE_URL, and the embedded directory lock between processes that do not share.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, redactUrl, StoreOpenError } from '../../src/stores/open-store.js';
import { describePostgres, postgresProbe } from '../helpers/db.js';

describe('openStore routing', () => {
  it('memory:// is an in-memory PGlite', async () => {
    const store = await openStore({ databaseUrl: 'memory://', dataDir: '/nonexistent/never-created' });
    expect(store.mode).toBe('pglite-memory');
    expect(store.client.kind).toBe('pglite');
    expect(await store.client.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await store.client.close();
    await store.client.close();
  });

  it('refuses other URL schemes with a message that does not echo the URL', async () => {
    const error = await openStore({ databaseUrl: 'mysql://user:hunter2@db/x', dataDir: '.' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreOpenError);
    expect((error as Error).message).not.toContain('hunter2');
  });

  it('a PostgreSQL URL that cannot connect fails fast without the password', async () => {
    const error = await openStore({ databaseUrl: 'postgres://u:hunter2@127.0.0.1:1/x', dataDir: '.' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreOpenError);
    expect((error as Error).message).toContain('postgres://u:***@127.0.0.1:1/x');
    expect((error as Error).message).not.toContain('hunter2');
  });

  it('redactUrl hides only the password', () => {
    expect(redactUrl('postgresql://keypool:s3cret@db.internal:5432/keypool?sslmode=require')).toBe(
      'postgresql://keypool:***@db.internal:5432/keypool?sslmode=require',
    );
  });
});

describePostgres('openStore on PostgreSQL', () => {
  it('postgres:// opens a pool', async () => {
    const store = await openStore({ databaseUrl: postgresProbe.adminUrl, dataDir: '.' });
    expect(store.mode).toBe('postgres');
    expect(store.client.kind).toBe('postgres');
    await store.client.close();
  });
});

describe('embedded directory without an owner', () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kp-lock-'));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a second process waits for the first and fails clearly when it does not let go', async () => {
    const first = await openStore({ dataDir });
    expect(first.mode).toBe('pglite-disk');
    const error = await openStore({ dataDir, lockTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreOpenError);
    expect((error as Error).message).toMatch(new RegExp(`in use by process ${process.pid}`));
    const waiting = openStore({ dataDir, lockTimeoutMs: 20_000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await first.client.close();
    const second = await waiting;
    expect(second.mode).toBe('pglite-disk');
    await second.client.close();
  });

  it('takes over a lock left by a dead process', async () => {
    await writeFile(join(dataDir, 'pglite.lock'), '999999999');
    const store = await openStore({ dataDir, lockTimeoutMs: 1_000 });
    expect(store.mode).toBe('pglite-disk');
    await store.client.close();
  });

  it('ignores a server.json whose process is gone', async () => {
    await writeFile(join(dataDir, 'server.json'), JSON.stringify({ pid: 999999999, host: '127.0.0.1', port: 1, token: 'x' }));
    const store = await openStore({ dataDir, lockTimeoutMs: 1_000 });
    expect(store.mode).toBe('pglite-disk');
    await store.client.close();
  });
});
