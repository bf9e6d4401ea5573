// Sustained load through the REAL Envoy (envoy/envoy.yaml as shipped, ports rewritten) against keypool's real ext_proc
// server: thousands of requests reach keypool over its Envoy connections without a single failure.
//
// Why this needs a test: Envoy 1.40 by default ends every ext_proc stream with RST_STREAM, and Node's HTTP/2 server
// (under keypool's gRPC) answers more than ~1,000 stream resets on one connection with GOAWAY; Envoy's next streams
// are then refused and, failing closed, Envoy answers those clients 500 (0.6-0.9% of requests under load before the
// fix). The shipped bootstraps guard against it twice (see envoy.yaml): the runtime flag
// `ext_proc_graceful_grpc_close` (Envoy half-closes and keypool closes cleanly: no reset at all) and a
// `max_requests_per_connection` budget of 900 on the keypool cluster (a connection never sees 1,000 resets). Each
// guard is checked alone here, and together as shipped, with Envoy's own cluster.keypool.* counters showing what
// happened on the wire (connections used, resets sent).
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { Agent, request } from 'node:http';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;
import { MockUpstream } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/connection-budget.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });

/** Well past the ~1,000 resets one Node HTTP/2 connection tolerates, and past five connection budgets of 900. */
const REQUESTS = 5_000;
/** Generous: 5,000 real decisions (HMAC, admission) through Envoy take ~10-20 s alone, far longer on a busy runner. */
const RUN_TIMEOUT_MS = 180_000;
/** Requests in flight: enough to keep Envoy and keypool busy, few enough for a busy 2-core runner. */
const IN_FLIGHT = 16;
const BUDGET = 900;
const GRACEFUL_CLOSE_FLAG = 'envoy.reloadable_features.ext_proc_graceful_grpc_close';

type Json = Record<string, any>;

/** The shipped envoy.yaml with test ports, optionally without one of its two guards. */
function config(keypoolPort: number, upstreamPort: number, without: 'graceful-close' | 'budget' | null): string {
  const rendered = parse(
    renderEnvoyConfig('envoy/envoy.yaml', {
      keypoolPort,
      upstreams: { openai: upstreamPort, anthropic: upstreamPort },
      healthCheckIntervalMs: 1_000,
      // A busy 2-core runner (Envoy, keypool, the mock provider, this load and other test files) can stall a
      // process for longer than the shipped 0.5 s; a timeout is not what this test is about.
      messageTimeoutMs: 10_000,
    }),
  ) as Json;
  if (without === 'graceful-close') delete rendered['layered_runtime'];
  if (without === 'budget') {
    const keypool = (rendered['static_resources']['clusters'] as Json[]).find((c) => c['name'] === 'keypool')!;
    delete keypool['typed_extension_protocol_options']['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']['common_http_protocol_options'];
  }
  return stringify(rendered);
}

/** Sends `total` POSTs with `inFlight` keep-alive connections; resolves with the count of each status (0 = transport error). */
async function load(envoy: RunningEnvoy, total: number, inFlight: number): Promise<Record<number, number>> {
  const url = new URL(`${envoy.baseUrl}/openai/v1/chat/completions`);
  const agent = new Agent({ keepAlive: true, maxSockets: inFlight });
  const statuses: Record<number, number> = {};
  const body = '{"model":"m"}';
  const one = () =>
    new Promise<number>((resolve) => {
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(body);
    });
  let sent = 0;
  const worker = async () => {
    while (sent < total) {
      sent += 1;
      const status = await one();
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: inFlight }, worker));
  } finally {
    agent.destroy();
  }
  return statuses;
}

interface KeypoolClusterStats {
  /** ext_proc streams Envoy opened to keypool (health checks excluded: they are counted apart). */
  streams: number;
  connections: number;
  /** Streams Envoy reset (the per-request reset the graceful close avoids). */
  resetsSent: number;
  /** Streams keypool refused (what a GOAWAY after too many resets causes). */
  refused: number;
  /** Connections keypool closed under Envoy with requests still on them. */
  remoteCloseWithActive: number;
  /** ext_proc streams that ended in an error for Envoy. */
  streamsFailed: number;
}

async function keypoolClusterStats(envoy: RunningEnvoy): Promise<KeypoolClusterStats> {
  const stat = (name: string) => envoyStat(envoy.adminUrl, name);
  return {
    streams: await stat('http.llm_gateway.ext_proc.keypool.streams_started'),
    connections: await stat('cluster.keypool.upstream_cx_total'),
    resetsSent: await stat('cluster.keypool.http2.tx_reset'),
    refused: await stat('cluster.keypool.upstream_rq_pending_failure_eject') + (await stat('cluster.keypool.http2.rx_reset')),
    remoteCloseWithActive: await stat('cluster.keypool.upstream_cx_destroy_remote_with_active_rq'),
    streamsFailed: await stat('http.llm_gateway.ext_proc.keypool.streams_failed'),
  };
}

describe.skipIf(!ENVOY)(`${REQUESTS} requests through Envoy and keypool: none fails`, () => {
  let engine: TestEngine;
  const upstream = new MockUpstream();
  let upstreamPort = 0;
  let keypool: ExtProcServer;
  let envoy: RunningEnvoy | null = null;

  beforeAll(async () => {
    engine = await createTestEngine();
    upstreamPort = await upstream.start();
    keypool = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, healthPollMs: 50 });
  });

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.shutdown();
    await upstream.stop();
  });

  beforeEach(async () => {
    await envoy?.stop();
    envoy = null;
    upstream.reset();
    engine.views.length = 0;
    engine.observed.length = 0;
    engine.issued.length = 0;
    engine.released.length = 0;
  });

  async function run(without: 'graceful-close' | 'budget' | null): Promise<KeypoolClusterStats> {
    envoy = await startEnvoy({ bin: ENVOY as string, config: config(keypool.port, upstreamPort, without) });
    const statuses = await load(envoy, REQUESTS, IN_FLIGHT);
    expect(statuses).toEqual({ 200: REQUESTS });
    expect(upstream.received).toHaveLength(REQUESTS);
    expect(engine.views).toHaveLength(REQUESTS);
    return keypoolClusterStats(envoy);
  }

  it('as shipped (graceful close and connection budget): every request answered 200, no stream reset', async () => {
    const stats = await run(null);
    expect(stats.streams).toBe(REQUESTS);
    expect(stats.streamsFailed).toBe(0);
    expect(stats.refused).toBe(0);
    expect(stats.remoteCloseWithActive).toBe(0);
    // Envoy half-closes and keypool ends each stream with gRPC OK: nothing left to reset.
    expect(stats.resetsSent).toBe(0);
    // The budget rotates connections: at least ceil(5000 / 900) = 6 of them (plus the health checker's).
    expect(stats.connections).toBeGreaterThanOrEqual(Math.ceil(REQUESTS / BUDGET));
  }, RUN_TIMEOUT_MS);

  it('graceful close alone: all requests over one keypool connection, no reset, no failure', async () => {
    const stats = await run('budget');
    expect(stats.streams).toBe(REQUESTS);
    expect(stats.streamsFailed).toBe(0);
    expect(stats.refused).toBe(0);
    expect(stats.resetsSent).toBe(0);
    // One connection for the ext_proc streams, at most one more for the health checker.
    expect(stats.connections).toBeLessThanOrEqual(2);
  }, RUN_TIMEOUT_MS);

  it("connection budget alone (Envoy's default reset per stream): resets spread over fresh connections, no failure", async () => {
    const stats = await run('graceful-close');
    expect(stats.streams).toBe(REQUESTS);
    expect(stats.streamsFailed).toBe(0);
    expect(stats.refused).toBe(0);
    expect(stats.remoteCloseWithActive).toBe(0);
    // Envoy's default: it resets (nearly) every stream, well over Node's limit of 1,000 per connection in total; the
    // budget keeps each connection below it. (A stream that ends as its connection drains is not reset.)
    expect(stats.resetsSent).toBeGreaterThan(REQUESTS * 0.9);
    expect(stats.connections).toBeGreaterThanOrEqual(Math.ceil(REQUESTS / BUDGET));
  }, RUN_TIMEOUT_MS);
});

it.skipIf(!ENVOY)(`the shipped runtime flag is ${GRACEFUL_CLOSE_FLAG}`, () => {
  // Guards the names above against a rename in a future Envoy: the test config removes exactly this layer.
  const shipped = parse(config(1, 2, null)) as Json;
  expect(shipped['layered_runtime']['layers'][0]['static_layer'][GRACEFUL_CLOSE_FLAG]).toBe(true);
});
