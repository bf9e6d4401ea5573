// SnapshotHolder against real stores: a change made through ANOTHER connection reaches the snapshot within 2 s on
// PostgreSQL (LISTEN/NOTIFY) and on the embedded store through the socket share; a failed reload keeps the last good.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/ports.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { SnapshotHolder, type ReloadReason } from '../../src/snapshot/holder.js';
import { migrate } from '../../src/stores/migrate.js';
import { openStore, type OpenedStore } from '../../src/stores/open-store.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import { createPgliteDatabase, createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import type { ConfigData } from '../../src/catalog/config-data.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

const secrets = { keyring: Keyring.parse(Keyring.generateSpec('v1')), pepper: new Uint8Array(randomBytes(32)) };

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

function hasKey(holder: SnapshotHolder, plaintextKey: string): boolean {
  const snapshot = holder.current();
  return snapshot !== null && snapshot.keysByDigest.has(snapshot.digestKey(plaintextKey));
}

/** A change written through `writer` shows up in a holder listening on `reader` within 2 s (interval reload off). */
async function expectChangeWithin2s(reader: SqlClient, writer: SqlClient): Promise<void> {
  const holder = new SnapshotHolder({
    source: new ConfigRepository(reader, secrets),
    feed: reader,
    deps: secrets,
    clock: systemClock,
    reloadIntervalMs: 0,
  });
  await holder.start();
  try {
    const { plaintextKey } = await new ConfigRepository(writer, secrets).keys.create({ name: `feed-${randomBytes(4).toString('hex')}` }, 'cli');
    const waitedMs = await waitFor(() => hasKey(holder, plaintextKey), 2_000);
    expect(waitedMs).toBeLessThan(2_000);
    expect(holder.version).toBeGreaterThanOrEqual(2);
  } finally {
    await holder.stop();
  }
}

describePostgres('SnapshotHolder on PostgreSQL', () => {
  let db: TestDatabase;
  let other: SqlClient;

  beforeAll(async () => {
    db = await createPostgresDatabase();
    other = db.openAnother({ max: 2 });
  });

  afterAll(async () => {
    await other?.close();
    await db?.drop();
  });

  it('picks up a change made through another connection within 2 s (NOTIFY)', async () => {
    await expectChangeWithin2s(db.client, other);
  });

  it('re-listens after the LISTEN connection is killed, reloads, and keeps receiving changes', async () => {
    const reasons: ReloadReason[] = [];
    const holder = new SnapshotHolder({
      source: new ConfigRepository(db.client, secrets),
      feed: db.client,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 0,
      onReload: (info) => reasons.push(info.reason),
    });
    await holder.start();
    try {
      const killed = await other.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'listen%' AND pid <> pg_backend_pid()`,
      );
      expect(killed[0]!.n).toBeGreaterThanOrEqual(1);
      await waitFor(() => reasons.includes('listen'), 5_000);
      const { plaintextKey } = await new ConfigRepository(other, secrets).keys.create({ name: `relisten-${randomBytes(4).toString('hex')}` }, 'cli');
      await waitFor(() => hasKey(holder, plaintextKey), 2_000);
    } finally {
      await holder.stop();
    }
  });
});

describe('SnapshotHolder on the embedded store', () => {
  let dataDir: string;
  let owner: OpenedStore;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kp-holder-'));
    owner = await openStore({ dataDir, role: 'owner' });
    await migrate(owner.client);
  });

  afterAll(async () => {
    await owner?.client.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('picks up a change made over the socket share within 2 s', async () => {
    const cli = await openStore({ dataDir });
    try {
      expect(cli.mode).toBe('pglite-shared');
      await expectChangeWithin2s(owner.client, cli.client);
    } finally {
      await cli.client.close();
    }
  });

  it('picks up its own process writes too', async () => {
    await expectChangeWithin2s(owner.client, owner.client);
  });
});

describe('SnapshotHolder behaviour', () => {
  let db: TestDatabase;
  let repo: ConfigRepository;

  beforeAll(async () => {
    db = await createPgliteDatabase();
    repo = new ConfigRepository(db.client, secrets);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('a failed reload keeps the last good snapshot and reports the error', async () => {
    let failing = false;
    const errors: Array<[unknown, ReloadReason]> = [];
    const holder = new SnapshotHolder({
      source: { loadConfigData: () => (failing ? Promise.reject(new Error('database down')) : repo.loadConfigData()) },
      feed: null,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 0,
      onError: (error, reason) => errors.push([error, reason]),
    });
    const first = await holder.start();
    expect(holder.current()).toBe(first);
    failing = true;
    expect(await holder.reload()).toBe(false);
    expect(holder.current()).toBe(first);
    expect(holder.reloadFailures).toBe(1);
    expect((holder.lastError as Error).message).toBe('database down');
    expect(errors).toHaveLength(1);
    expect(errors[0]![1]).toBe('manual');
    failing = false;
    expect(await holder.reload()).toBe(true);
    expect(holder.current()).not.toBe(first);
    expect(holder.version).toBe(2);
    expect(holder.lastError).toBeNull();
    await holder.stop();
  });

  it('start() rejects when the first load fails (nothing to serve yet)', async () => {
    const holder = new SnapshotHolder({
      source: { loadConfigData: () => Promise.reject(new Error('no schema')) },
      feed: null,
      deps: secrets,
      clock: systemClock,
    });
    await expect(holder.start()).rejects.toThrow('no schema');
    expect(holder.current()).toBeNull();
  });

  it('debounces a burst of notifications into few reloads', async () => {
    let loads = 0;
    const holder = new SnapshotHolder({
      source: {
        loadConfigData: () => {
          loads++;
          return repo.loadConfigData();
        },
      },
      feed: db.client,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 0,
      debounceMs: 100,
    });
    await holder.start();
    const before = loads;
    for (let i = 0; i < 10; i++) await repo.mappings.create({ pattern: `burst-${i}-${randomBytes(3).toString('hex')}`, matchType: 'exact', priority: 1 }, 't');
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(loads - before).toBeGreaterThanOrEqual(1);
    expect(loads - before).toBeLessThanOrEqual(3);
    await holder.stop();
  });

  it('reloads on the safety-net interval and stops cleanly', async () => {
    const reasons: ReloadReason[] = [];
    const holder = new SnapshotHolder({
      source: repo,
      feed: null,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 50,
      onReload: (info) => reasons.push(info.reason),
    });
    await holder.start();
    await waitFor(() => reasons.filter((r) => r === 'interval').length >= 2, 2_000);
    await holder.stop();
    const count = reasons.length;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(reasons.length).toBe(count);
    expect(await holder.reload()).toBe(false);
  });

  it('the config_version poll notices changes when there is no change feed', async () => {
    const holder = new SnapshotHolder({
      source: repo,
      feed: null,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 0,
      pollIntervalMs: 50,
      debounceMs: 10,
    });
    await holder.start();
    try {
      const { plaintextKey } = await repo.keys.create({ name: `poll-${randomBytes(4).toString('hex')}` }, 't');
      await waitFor(() => hasKey(holder, plaintextKey), 2_000);
    } finally {
      await holder.stop();
    }
  });

  it('uses the injected clock for compile time and reload bookkeeping', async () => {
    const clock = { nowMs: () => 1_234_567 };
    const holder = new SnapshotHolder({ source: repo, feed: null, deps: secrets, clock, reloadIntervalMs: 0 });
    const snapshot = await holder.start();
    expect(snapshot.loadedAtMs).toBe(1_234_567);
    expect(holder.lastReloadAtMs).toBe(1_234_567);
    await holder.stop();
  });

  it('a reload requested while one runs triggers one more afterwards', async () => {
    let release: (() => void) | null = null;
    let loads = 0;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const holder = new SnapshotHolder({
      source: {
        loadConfigData: async (): Promise<ConfigData> => {
          loads++;
          if (loads === 2) await gate;
          return repo.loadConfigData();
        },
      },
      feed: null,
      deps: secrets,
      clock: systemClock,
      reloadIntervalMs: 0,
    });
    await holder.start();
    const first = holder.reload();
    const second = holder.reload();
    release!();
    await Promise.all([first, second]);
    await waitFor(() => loads === 3, 1_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(loads).toBe(3);
    await holder.stop();
  });
});
