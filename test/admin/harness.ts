// A real admin server over a real store (in-memory PGlite by default, PostgreSQL when given), the real snapshot
// holder, the in-memory rate state, a controllable clock and a captured pino log. Fakes only for the outside world:
// a local mock provider for check-health.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createAdminDeps, type AdminDeps } from '../../src/admin/deps.js';
import { KeypoolMetrics } from '../../src/admin/metrics.js';
import { startAdminServer, type AdminServer, type MetricsAccess } from '../../src/admin/server.js';
import { DEFAULT_KEY_HEADERS } from '../../src/core/apikey.js';
import { Engine } from '../../src/engine.js';
import { createLogger } from '../../src/log.js';
import type { Clock } from '../../src/ports.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { SnapshotHolder } from '../../src/snapshot/holder.js';
import { MemoryRateStateStore } from '../../src/stores/memory-state.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import { WriteBuffer } from '../../src/stores/write-buffer.js';
import { createPgliteDatabase, type TestDatabase } from '../helpers/db.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

export const TOKEN = 'test-admin-token-0123456789abcdef';
export const TOKEN_NAME = 'ci-admin';

export class ManualClock implements Clock {
  constructor(public ms: number = Date.now()) {}
  nowMs(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** Mock provider for check-health: the answer depends on the key presented. */
export interface MockProvider {
  readonly url: string;
  readonly requests: Array<{ path: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

export const UPSTREAM_KEYS = {
  good: 'sk-good-upstream-0000000000000001',
  bad: 'sk-bad-upstream-00000000000000002',
  limited: 'sk-limited-upstream-000000000003',
  slow: 'sk-slow-upstream-0000000000000004',
  failing: 'sk-failing-upstream-000000000005',
};

export async function startMockProvider(): Promise<MockProvider> {
  const requests: MockProvider['requests'] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ path: req.url ?? '', headers: req.headers });
    const auth = String(req.headers.authorization ?? req.headers['x-api-key'] ?? req.headers['api-key'] ?? req.headers['x-goog-api-key'] ?? '');
    const key = auth.replace(/^Bearer /, '');
    if (key === UPSTREAM_KEYS.good) {
      res.writeHead(200, { 'content-type': 'application/json', 'x-ratelimit-remaining-requests': '99', 'x-ratelimit-limit-requests': '100' });
      res.end('{"data":[]}');
    } else if (key === UPSTREAM_KEYS.limited) {
      res.writeHead(429, { 'retry-after': '20', 'content-type': 'application/json' });
      res.end('{"error":{"message":"rate limited"}}');
    } else if (key === UPSTREAM_KEYS.slow) {
      setTimeout(() => {
        res.writeHead(200);
        res.end('{}');
      }, 2_000).unref();
    } else if (key === UPSTREAM_KEYS.failing) {
      res.writeHead(503);
      res.end('{}');
    } else {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"Incorrect API key provided"}}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Harness {
  readonly db: TestDatabase;
  readonly sql: SqlClient;
  readonly repository: ConfigRepository;
  readonly holder: SnapshotHolder;
  readonly clock: ManualClock;
  readonly state: MemoryRateStateStore;
  readonly metrics: KeypoolMetrics;
  readonly deps: AdminDeps;
  readonly server: AdminServer;
  readonly engine: Engine;
  readonly writes: WriteBuffer;
  readonly mock: MockProvider;
  readonly logs: string[];
  /** What a second snapshot holder (another replica) needs to compile the same snapshot. */
  readonly secrets: { readonly pepper: Uint8Array; readonly keyring: Keyring };
  readonly baseUrl: string;
  api(method: string, path: string, options?: ApiOptions): Promise<ApiResponse>;
  close(): Promise<void>;
}

export interface ApiOptions {
  readonly body?: unknown;
  /** Sent as is (no JSON encoding). */
  readonly rawBody?: string;
  /** null = no authorization header; default the admin token. */
  readonly token?: string | null;
  readonly headers?: Record<string, string>;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly json: any;
}

export interface HarnessOptions {
  /** A database to use (PostgreSQL suites); default a fresh in-memory PGlite. */
  readonly db?: TestDatabase;
  readonly token?: string | undefined;
  readonly metricsAccess?: MetricsAccess;
  readonly autoRevokeOverdue?: boolean;
  readonly handlerTimeoutMs?: number;
  /** KEYPOOL_ADMIN_ALLOWED_HOSTS */
  readonly allowedHosts?: readonly string[];
  /** check-health deadline (default 300 ms: the mock's slow key answers after 2 s). */
  readonly healthCheckTimeoutMs?: number;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const db = options.db ?? (await createPgliteDatabase());
  const keyring = Keyring.parse(Keyring.generateSpec('v1'));
  const pepper = randomBytes(32);
  const repository = new ConfigRepository(db.client, { keyring, pepper });
  const clock = new ManualClock();
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(...chunk.toString('utf8').split('\n').filter((line) => line.length > 0));
      callback();
    },
  });
  const logger = createLogger('debug', sink);
  const holder = new SnapshotHolder({ source: repository, feed: db.client, deps: { pepper, keyring }, clock, reloadIntervalMs: 0, debounceMs: 10 });
  await holder.start();
  const state = new MemoryRateStateStore();
  const metrics = new KeypoolMetrics({ processMetrics: false });
  const writes = new WriteBuffer({ target: repository, maxPending: 1000, flushIntervalMs: 60_000 });
  metrics.attach({ snapshots: holder, state, clock, writes, breakers: () => ({ state_store: 'closed', database: 'closed' }) });
  const mock = await startMockProvider();
  const engine = new Engine({
    snapshots: holder,
    state,
    writes,
    clock,
    logger,
    keyHeaders: DEFAULT_KEY_HEADERS,
    leaseMs: 60_000,
    defaultCooldownMs: 30_000,
    onDecision: metrics.onDecision,
    onAdmission: metrics.onAdmission,
    onObservation: (ticket, outcome) => metrics.onObservation(ticket.pool, ticket.accountName, outcome),
    onTokens: metrics.onTokens,
  });
  const deps = createAdminDeps({
    sql: db.client,
    keyring,
    pepper,
    snapshots: holder,
    state,
    engine,
    clock,
    metrics,
    repository,
    healthCheck: { baseUrls: { openai: mock.url, anthropic: mock.url }, timeoutMs: options.healthCheckTimeoutMs ?? 300 },
    autoRevokeOverdue: options.autoRevokeOverdue,
  });
  const server = await startAdminServer({
    listen: '127.0.0.1:0',
    token: 'token' in options ? options.token : TOKEN,
    tokenName: TOKEN_NAME,
    deps,
    logger,
    metricsAccess: options.metricsAccess,
    allowedHosts: options.allowedHosts,
    handlerTimeoutMs: options.handlerTimeoutMs,
    lifecycleIntervalMs: 0,
  });
  const baseUrl = `http://127.0.0.1:${server.port}`;

  async function api(method: string, path: string, o: ApiOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...o.headers };
    const token = o.token === undefined ? TOKEN : o.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (o.rawBody !== undefined) body = o.rawBody;
    else if (o.body !== undefined) body = JSON.stringify(o.body);
    // As every client must: the JSON content type on every state-changing request, with or without a body.
    if ((body !== undefined || method !== 'GET') && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const response = await fetch(baseUrl + path, { method, headers, body });
    const text = await response.text();
    let json: unknown;
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  }

  return {
    db,
    sql: db.client,
    repository,
    holder,
    clock,
    state,
    metrics,
    deps,
    server,
    engine,
    writes,
    mock,
    logs,
    secrets: { pepper, keyring },
    baseUrl,
    api,
    async close() {
      await server.close();
      await mock.close();
      await holder.stop();
      await writes.stop();
      await state.close();
      if (!options.db) await db.drop();
    },
  };
}

/** Waits until the predicate holds (the change feed reloads the snapshot asynchronously). */
export async function eventually(predicate: () => boolean | Promise<boolean>, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
