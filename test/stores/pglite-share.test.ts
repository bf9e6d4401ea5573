// The embedded store shared between processes: the owner (keypool serve) serves its PGlite on a loopback socket,
// other processes (the CLI) connect to it. Runs on a real data directory.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/secrets/keyring.js';
import { migrate } from '../../src/stores/migrate.js';
import { openStore, StoreOpenError, type OpenedStore } from '../../src/stores/open-store.js';
import type { PgliteClient } from '../../src/stores/pglite-client.js';
import { findLiveShare, readShareInfo, SHARE_APPLICATION_PREFIX } from '../../src/stores/pglite-share.js';
import { NotificationScanner } from '../../src/stores/pg-wire.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

const run = promisify(execFile);
const secrets = { keyring: Keyring.parse(Keyring.generateSpec('v1')), pepper: new Uint8Array(randomBytes(32)) };

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 2_000): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

describe('embedded store shared over a loopback socket', () => {
  let dataDir: string;
  let owner: OpenedStore;
  let ownerClient: PgliteClient;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kp-share-'));
    owner = await openStore({ dataDir, role: 'owner' });
    ownerClient = owner.client as PgliteClient;
    await migrate(owner.client);
  });

  afterAll(async () => {
    await owner?.client.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('advertises itself in server.json (mode 0600) with a live pid and port', async () => {
    expect(owner.mode).toBe('pglite-disk');
    expect(owner.share).not.toBeNull();
    const info = await readShareInfo(dataDir);
    expect(info).toMatchObject({ pid: process.pid, host: '127.0.0.1', port: owner.share!.port });
    expect((await stat(join(dataDir, 'server.json'))).mode & 0o777).toBe(0o600);
    expect(await findLiveShare(dataDir)).not.toBeNull();
  });

  it('a second owner is refused while the first is alive', async () => {
    await expect(openStore({ dataDir, role: 'owner' })).rejects.toBeInstanceOf(StoreOpenError);
  });

  it('a client finds the share and writes through it; the owner sees the writes and gets the NOTIFY', async () => {
    const client = await openStore({ dataDir });
    try {
      expect(client.mode).toBe('pglite-shared');
      const payloads: string[] = [];
      const unlisten = await ownerClient.listen('keypool_config', (payload) => payloads.push(payload));
      const repo = new ConfigRepository(client.client, secrets);
      const { row } = await repo.keys.create({ name: `shared-${randomBytes(3).toString('hex')}` }, 'cli');
      const waitedMs = await waitFor(() => payloads.includes('system_api_keys'));
      expect(waitedMs).toBeLessThan(2_000);
      const ownerRepo = new ConfigRepository(owner.client, secrets);
      expect((await ownerRepo.keys.get(row.id)).name).toBe(row.name);
      await unlisten();
    } finally {
      await client.client.close();
    }
  });

  it("the owner never runs inside a socket client's open transaction", async () => {
    const client = await openStore({ dataDir });
    const pattern = `iso-${randomBytes(4).toString('hex')}`;
    try {
      let ownerResult: number | null = null;
      let ownerQuery: Promise<void> | null = null;
      await client.client
        .transaction(async (tx) => {
          await tx.query(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'exact', 1)`, [pattern]);
          ownerQuery = owner.client
            .query<{ n: number }>('SELECT count(*)::int AS n FROM api_key_priority_mappings WHERE pattern = $1', [pattern])
            .then((rows) => {
              ownerResult = rows[0]!.n;
            });
          await new Promise((resolve) => setTimeout(resolve, 150));
          // Still waiting for the client's session: it has not run inside the client's transaction.
          expect(ownerResult).toBeNull();
          throw new Error('roll back');
        })
        .catch((error: Error) => {
          if (error.message !== 'roll back') throw error;
        });
      await ownerQuery;
      expect(ownerResult).toBe(0);
    } finally {
      await client.client.close();
    }
  });

  it('a client that disconnects mid-transaction is rolled back and does not block the owner', async () => {
    const info = (await readShareInfo(dataDir))!;
    const raw = postgres({
      host: info.host,
      port: info.port,
      max: 1,
      prepare: false,
      onnotice: () => undefined,
      connection: { application_name: `${SHARE_APPLICATION_PREFIX}${info.token}` },
    });
    const pattern = `gone-${randomBytes(4).toString('hex')}`;
    const reserved = await raw.reserve();
    await reserved.unsafe('BEGIN');
    await reserved.unsafe(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'exact', 1)`, [pattern]);
    await raw.end({ timeout: 0 });
    const rows = await owner.client.query<{ n: number }>('SELECT count(*)::int AS n FROM api_key_priority_mappings WHERE pattern = $1', [pattern]);
    expect(rows[0]!.n).toBe(0);
  });

  it('refuses a connection without the token from server.json', async () => {
    const info = (await readShareInfo(dataDir))!;
    const intruder = postgres({
      host: info.host,
      port: info.port,
      max: 1,
      prepare: false,
      connect_timeout: 3,
      onnotice: () => undefined,
      connection: { application_name: `${SHARE_APPLICATION_PREFIX}wrong-token` },
    });
    try {
      await expect(intruder.unsafe('SELECT 1')).rejects.toThrow(/not a keypool share client/);
    } finally {
      await intruder.end({ timeout: 0 });
    }
  });

  it('serialises concurrent clients and the owner without mixing their batches', async () => {
    const clients = await Promise.all([openStore({ dataDir }), openStore({ dataDir })]);
    try {
      const work = (store: OpenedStore, tag: string) =>
        Array.from({ length: 15 }, (_, i) =>
          store.client.transaction(async (tx) => {
            const pattern = `${tag}-${i}-${randomBytes(3).toString('hex')}`;
            const priority = i % 10; // within the priority range (0-9)
            await tx.query(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'contains', $2)`, [pattern, priority]);
            const rows = await tx.query<{ priority: number }>('SELECT priority FROM api_key_priority_mappings WHERE pattern = $1', [pattern]);
            return rows[0]!.priority === priority;
          }),
        );
      const results = await Promise.all([...work(clients[0]!, 'a'), ...work(clients[1]!, 'b'), ...work(owner, 'o')]);
      expect(results.every(Boolean)).toBe(true);
    } finally {
      await Promise.all(clients.map((store) => store.client.close()));
    }
  });

  it('a separate process connects through server.json and its change reaches the owner within 2 s', async () => {
    const payloads: string[] = [];
    const unlisten = await ownerClient.listen('keypool_config', (payload) => payloads.push(payload));
    const pattern = `child-${randomBytes(4).toString('hex')}`;
    // Plain JS child (no TypeScript loader needed): reads server.json and writes with the postgres client.
    const script = `
      import postgres from 'postgres';
      import { readFileSync } from 'node:fs';
      const info = JSON.parse(readFileSync(process.argv[1], 'utf8'));
      const sql = postgres({ host: info.host, port: info.port, max: 1, prepare: false, onnotice() {},
        connection: { application_name: ${JSON.stringify(SHARE_APPLICATION_PREFIX)} + info.token } });
      await sql.unsafe("INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'exact', 2)", [process.argv[2]]);
      await sql.end();
    `;
    const started = Date.now();
    await run(process.execPath, ['--input-type=module', '-e', script, join(dataDir, 'server.json'), pattern], { cwd: process.cwd(), timeout: 20_000 });
    await waitFor(() => payloads.includes('api_key_priority_mappings'));
    expect(Date.now() - started).toBeLessThan(10_000);
    const rows = await owner.client.query<{ n: number }>('SELECT count(*)::int AS n FROM api_key_priority_mappings WHERE pattern = $1', [pattern]);
    expect(rows[0]!.n).toBe(1);
    await unlisten();
  });

  it('idle connections that never authenticate take no client slot, and are closed after the handshake deadline', async () => {
    const info = (await readShareInfo(dataDir))!;
    const idle = await Promise.all(
      Array.from({ length: 20 }, () => new Promise<Socket>((resolve, reject) => {
        const socket = createConnection({ host: info.host, port: info.port }, () => resolve(socket));
        socket.once('error', reject);
      })),
    );
    const closed = idle.map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
    try {
      // More idle sockets than the 8 client slots: a real client still gets in at once.
      const client = await openStore({ dataDir });
      try {
        expect(client.mode).toBe('pglite-shared');
        expect(await client.client.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      } finally {
        await client.client.close();
      }
      // The share ends them itself (2 s deadline; generous bound for a busy runner).
      await waitFor(async () => (await Promise.race([Promise.all(closed).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 50))])), 20_000);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  }, 30_000);

  it('after the owner closes, server.json is gone and a client opens the directory itself', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kp-share-close-'));
    try {
      const first = await openStore({ dataDir: dir, role: 'owner' });
      await migrate(first.client);
      await first.client.close();
      await expect(readFile(join(dir, 'server.json'))).rejects.toThrow();
      const next = await openStore({ dataDir: dir });
      expect(next.mode).toBe('pglite-disk');
      expect((await new ConfigRepository(next.client, secrets).providers.list()).length).toBe(6);
      await next.client.close();
      await expect(readFile(join(dir, 'pglite.lock'))).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('share wire helpers', () => {
  it('finds NotificationResponse messages split across chunks', () => {
    const found: Array<[string, string]> = [];
    const scanner = new NotificationScanner((channel, payload) => found.push([channel, payload]));
    const body = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from('keypool_config\0providers\0')]);
    const header = Buffer.alloc(5);
    header[0] = 0x41;
    header.writeInt32BE(4 + body.length, 1);
    const other = Buffer.from([0x43, 0, 0, 0, 9, 0x53, 0x45, 0x4c, 0x45, 0]); // CommandComplete "SELE"
    const stream = Buffer.concat([other, header, body, other]);
    for (let i = 0; i < stream.length; i += 3) scanner.push(new Uint8Array(stream.subarray(i, i + 3)));
    expect(found).toEqual([['keypool_config', 'providers']]);
  });
});
