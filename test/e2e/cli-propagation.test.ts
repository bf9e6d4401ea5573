// A change made with the CLI in another process reaches a running `keypool serve` within 2 s: on PostgreSQL (LISTEN/
// NOTIFY change feed) and on the embedded default (the CLI talks to the server's PGlite over its loopback share).
// Both sides are real processes; the running instance is asked through its ext_proc gRPC port, as Envoy would.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import { ExtProcClient, requestHeadersMsg, type Msg } from '../envoy/ext-proc-client.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { generatePepperSpec } from '../../src/secrets/pepper.js';

const run = promisify(execFile);
const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const PROPAGATION_BUDGET_MS = 2_000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

interface Instance {
  readonly child: ChildProcess;
  readonly client: ExtProcClient;
  readonly env: NodeJS.ProcessEnv;
}

async function startServe(env: NodeJS.ProcessEnv): Promise<Instance> {
  const port = await freePort();
  const fullEnv = { ...env, KEYPOOL_GRPC_LISTEN: `127.0.0.1:${port}`, KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0', LOG_LEVEL: 'warn' };
  const child = spawn(process.execPath, [CLI, 'serve'], { env: fullEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const client = new ExtProcClient(`127.0.0.1:${port}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`keypool serve exited early: ${stderr}`);
    if ((await client.check().catch(() => '')) === 'SERVING') break;
    if (Date.now() > deadline) throw new Error(`keypool serve did not become SERVING: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, client, env };
}

async function stopServe(instance: Instance | undefined): Promise<void> {
  if (!instance) return;
  instance.client.close();
  if (instance.child.exitCode !== null) return;
  const exited = new Promise((resolve) => instance.child.once('exit', resolve));
  instance.child.kill('SIGTERM');
  await exited;
}

async function cli(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, ...args], { env, timeout: 60_000 });
  return stdout;
}

/** Sends one request_headers with the key and returns the answer kind and status. */
const STATUS_BY_ENUM_NAME: Record<string, number> = { Unauthorized: 401, Forbidden: 403, TooManyRequests: 429, ServiceUnavailable: 503 };

async function ask(client: ExtProcClient, key: string): Promise<{ allowed: boolean; status: number | null }> {
  const call = client.process({ 'x-keypool-provider': 'openai' });
  call.send(requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${key}` }));
  const answer: Msg = await call.next();
  call.cancel();
  const immediate = answer['immediate_response'] as { status?: { code?: string | number } } | undefined;
  if (!immediate) return { allowed: true, status: null };
  const code = immediate.status?.code;
  return { allowed: false, status: typeof code === 'number' ? code : (STATUS_BY_ENUM_NAME[String(code)] ?? null) };
}

/** Creates a key with the CLI, then polls the running instance until it is accepted; returns the delay in ms. */
async function createKeyAndMeasure(instance: Instance): Promise<number> {
  const created = JSON.parse(await cli(instance.env, ['keys', 'create', '--name', `k-${Date.now()}`, '--json'])) as {
    api_key: string;
  };
  const createdAtMs = Date.now();
  for (;;) {
    const answer = await ask(instance.client, created.api_key);
    const elapsedMs = Date.now() - createdAtMs;
    if (answer.allowed) return elapsedMs;
    expect(answer.status).toBe(401);
    if (elapsedMs > PROPAGATION_BUDGET_MS * 3) return elapsedMs;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function addAccount(env: NodeJS.ProcessEnv): Promise<void> {
  await run(process.execPath, [CLI, 'accounts', 'add', '--provider', 'openai', '--name', 'prop-1', '--key-env', 'UPSTREAM_KEY'], {
    env: { ...env, UPSTREAM_KEY: 'sk-propagation-test-0000000000' },
    timeout: 60_000,
  });
}

describePostgres('CLI changes reach a running instance on PostgreSQL', () => {
  let database: TestDatabase;
  let instance: Instance | undefined;

  beforeAll(async () => {
    database = await createPostgresDatabase({ migrate: true });
    const env = {
      ...process.env,
      DATABASE_URL: database.url!,
      KEYPOOL_ENCRYPTION_KEYS: Keyring.generateSpec(),
      KEYPOOL_KEY_PEPPER: generatePepperSpec(),
    };
    await addAccount(env);
    instance = await startServe(env);
  }, 120_000);

  afterAll(async () => {
    await stopServe(instance);
    await database?.drop();
  });

  it('a key created with `keypool keys create` is accepted within 2 s', async () => {
    const delaysMs = [await createKeyAndMeasure(instance!), await createKeyAndMeasure(instance!)];
    for (const delayMs of delaysMs) expect(delayMs).toBeLessThan(PROPAGATION_BUDGET_MS);
  }, 60_000);

  it('a key revoked with `keypool keys revoke` is refused within 2 s', async () => {
    const created = JSON.parse(await cli(instance!.env, ['keys', 'create', '--name', 'to-revoke', '--json'])) as {
      api_key: string;
      key: { id: string };
    };
    const id = created.key.id;
    const deadline = Date.now() + PROPAGATION_BUDGET_MS * 3;
    while (!(await ask(instance!.client, created.api_key)).allowed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await cli(instance!.env, ['keys', 'revoke', id]);
    const revokedAtMs = Date.now();
    let answer = await ask(instance!.client, created.api_key);
    while (answer.allowed && Date.now() - revokedAtMs < PROPAGATION_BUDGET_MS * 3) {
      await new Promise((r) => setTimeout(r, 20));
      answer = await ask(instance!.client, created.api_key);
    }
    expect(answer).toEqual({ allowed: false, status: 401 });
    expect(Date.now() - revokedAtMs).toBeLessThan(PROPAGATION_BUDGET_MS);
  }, 60_000);
});

describe('CLI changes reach a running instance on the embedded default', () => {
  let dataDir: string;
  let instance: Instance | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-prop-'));
    const env = { ...process.env, KEYPOOL_DATA_DIR: dataDir, DATABASE_URL: '', KEYPOOL_ENCRYPTION_KEYS: '', KEYPOOL_KEY_PEPPER: '' };
    instance = await startServe(env);
  }, 120_000);

  afterAll(async () => {
    await stopServe(instance);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a key created in a second terminal while serve runs is accepted within 2 s', async () => {
    expect(await createKeyAndMeasure(instance!)).toBeLessThan(PROPAGATION_BUDGET_MS);
  }, 60_000);
});
