// Through the REAL Envoy binary (envoy/envoy.yaml and envoy/envoy-failover.yaml, ports rewritten),
// keypool's real ext_proc server over the real engine (static snapshot, memory rate state: test/helpers/test-engine.ts),
// and a mock provider upstream.
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { createServer as createHttp2Server, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import {
  REPO_ROOT,
  clusterHealthFlags,
  envoyOrSkip,
  envoyStat,
  renderEnvoyConfig,
  startEnvoy,
  validateEnvoyConfig,
  type RunningEnvoy,
} from '../helpers/envoy.js';
import { waitFor, waitForAsync } from './ext-proc-client.js';
import { deny } from '../../src/core/errors.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;
const POOL_EXHAUSTED_MESSAGE = deny('pool_exhausted').message;
import { MockUpstream, firstChunk, restOfBody, type Reply } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/envoy-real.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });

const CHAT = '/openai/v1/chat/completions';
const MESSAGES = '/anthropic/v1/messages';

function post(envoy: RunningEnvoy, path: string, headers: Record<string, string>, body = '{"model":"m"}'): Promise<Response> {
  return fetch(`${envoy.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

function allHeaderValues(headers: Record<string, string | string[] | undefined>): string {
  return Object.values(headers)
    .flat()
    .filter((v): v is string => typeof v === 'string')
    .join('\n');
}

describe.skipIf(!ENVOY)('shipped configs', () => {
  it.each(['envoy/envoy.yaml', 'envoy/envoy-failover.yaml'])('%s passes envoy --mode validate', async (file) => {
    const result = await validateEnvoyConfig(ENVOY as string, `${REPO_ROOT}${file}`);
    expect(result.output).toContain('OK');
    expect(result.code).toBe(0);
    expect(result.output).not.toMatch(/deprecated/i);
  });
});

describe.skipIf(!ENVOY)('envoy/envoy.yaml through a real Envoy', () => {
  let engine: TestEngine;
  const upstream = new MockUpstream();
  let keypool: ExtProcServer;
  let envoy: RunningEnvoy;

  beforeAll(async () => {
    engine = await createTestEngine();
    const upstreamPort = await upstream.start();
    keypool = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, healthPollMs: 50 });
    envoy = await startEnvoy({
      bin: ENVOY as string,
      config: renderEnvoyConfig('envoy/envoy.yaml', {
        keypoolPort: keypool.port,
        upstreams: { openai: upstreamPort, anthropic: upstreamPort },
        healthCheckIntervalMs: 200,
      }),
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.shutdown();
    await upstream.stop();
  });

  beforeEach(async () => {
    upstream.reset();
    engine.views.length = 0;
    engine.observed.length = 0;
    engine.holdsConcurrencySlot = false;
    engine.failAdmissions = false;
    // The clock is frozen: a cooldown from an earlier test (a 429) would last for ever.
    await engine.resetState();
  });

  it('allowed: upstream gets the pooled key instead of the client key; keypool sees provider and client address', async () => {
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ object: 'chat.completion' });

    expect(upstream.received).toHaveLength(1);
    const got = upstream.received[0]!;
    expect(got.url).toBe('/v1/chat/completions');
    expect(got.headers['host']).toBe('api.openai.com');
    expect(got.headers['authorization']).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(got.headers['x-keypool-priority']).toBe('1');
    expect(got.headers['x-keypool-tenant']).toBe('acme');
    expect(allHeaderValues(got.headers)).not.toContain(CLIENT_KEY);
    expect(got.body).toBe('{"model":"m"}');

    const view = engine.views[0]!;
    expect(view.provider).toBe('openai');
    expect(view.clientAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(view.headers[':path']).toBe(CHAT);
    expect(view.headers['authorization']).toBe(`Bearer ${CLIENT_KEY}`);

    await waitFor(() => engine.observed.length === 1, 2_000, 'observation');
    expect(engine.observed[0]?.status).toBe(200);
    expect(engine.observed[0]?.headers['x-ratelimit-remaining-requests']).toBe('99');
    await waitFor(() => Object.values(engine.releaseCounts()).every((n) => n === 1), 2_000, 'release');
    // Envoy accepted keypool's mutation as sent (raw_value only, append=false).
    expect(await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool.rejected_header_mutations')).toBe(0);
    expect(await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool.spurious_msgs_received')).toBe(0);
  });

  it('provider metadata arrives per route (anthropic route -> anthropic pool, x-api-key style)', async () => {
    const res = await post(envoy, MESSAGES, { 'x-api-key': CLIENT_KEY });
    expect(res.status).toBe(200);
    await res.text();
    expect(engine.views[0]?.provider).toBe('anthropic');
    const got = upstream.received[0]!;
    expect(got.url).toBe('/v1/messages');
    expect(got.headers['x-api-key']).toMatch(/^sk-ant-[ab]$/);
    expect(got.headers['authorization']).toBeUndefined();
  });

  it('deny: explicit status, JSON error body, retry-after; upstream never called', async () => {
    await engine.coolDown('openai', 7);
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(429);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('retry-after')).toBe('7');
    // The body core sends (OpenAI's error shape, core/errors.ts), not a hand-built one.
    expect(await res.json()).toEqual({ error: { type: 'rate_limit_error', code: 'pool_exhausted', message: POOL_EXHAUSTED_MESSAGE } });

    const unknown = await post(envoy, CHAT, { authorization: 'Bearer kp_nope' });
    expect(unknown.status).toBe(401);
    expect(await unknown.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    expect(upstream.received).toHaveLength(0);
    // The deny code lands in %RESPONSE_CODE_DETAILS% of the access log (flushed asynchronously).
    await waitFor(() => envoy.output().includes(' 429 pool_exhausted '), 5_000, 'access log line');
  });

  it('engine failure: 503 keypool_unavailable JSON; upstream never called', async () => {
    engine.failAdmissions = true;
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'keypool_unavailable' } });
    expect(upstream.received).toHaveLength(0);
  });

  it('unrouted paths get 404 without consulting keypool', async () => {
    const res = await post(envoy, '/v1/chat/completions', { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'unknown_route' } });
    expect(engine.views).toHaveLength(0);
    expect(upstream.received).toHaveLength(0);
  });

  it('SSE passes unbuffered: the first event arrives before the upstream ends the response', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    upstream.enqueue({ sse: true, first: 'data: {"delta":"Hel"}\n\n', holdUntil: held, rest: 'data: [DONE]\n\n' });
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    expect(await firstChunk(reader)).toContain('"delta":"Hel"');
    release();
    expect(await restOfBody(reader)).toContain('[DONE]');
  });

  describe('an account with max_concurrency holds its slot until the response has ended', () => {
    const stat = (name: string) => envoyStat(envoy.adminUrl, `http.llm_gateway.ext_proc.keypool.${name}`);

    it('streamed body: first event unbuffered, slot held past message_timeout, freed once at the end; no body reaches keypool', async () => {
      engine.holdsConcurrencySlot = true;
      const sentBefore = await stat('stream_msgs_sent');
      const timeoutsBefore = await stat('message_timeouts');
      const sse = heldSse();
      upstream.enqueue(sse.reply);
      const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      expect(await firstChunk(reader)).toContain('"delta":"Hel"');
      const lease = lastLease(engine);
      // Longer than message_timeout (0.5 s): nothing is timed while the body streams.
      await new Promise((r) => setTimeout(r, 700));
      expect(engine.observed.map((o) => o.status)).toEqual([200]);
      expect(engine.releaseCounts()[lease]).toBe(0);
      sse.finish();
      expect(await restOfBody(reader)).toContain('[DONE]');
      await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release at the end of the body');
      await new Promise((r) => setTimeout(r, 100));
      expect(engine.releaseCounts()[lease]).toBe(1);
      // Two messages each way (request and response headers): no body, no trailers.
      expect((await stat('stream_msgs_sent')) - sentBefore).toBe(2);
      expect(await stat('message_timeouts')).toBe(timeoutsBefore);
      expect(await stat('spurious_msgs_received')).toBe(0);
    });

    it('a JSON response keeps its content-length; slot freed once', async () => {
      engine.holdsConcurrencySlot = true;
      upstream.enqueue({ status: 200, headers: { 'content-type': 'application/json', 'content-length': '13' }, body: '{"object":"x"}'.slice(0, 13) });
      const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe('13');
      expect(res.headers.get('transfer-encoding')).toBeNull();
      await res.text();
      const lease = lastLease(engine);
      await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release');
    });

    it('client gone mid-stream: slot freed once', async () => {
      engine.holdsConcurrencySlot = true;
      const sse = heldSse();
      upstream.enqueue(sse.reply);
      const aborted = new AbortController();
      const res = await fetch(`${envoy.baseUrl}${CHAT}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
        body: '{}',
        signal: aborted.signal,
      });
      const reader = res.body!.getReader();
      await firstChunk(reader);
      const lease = lastLease(engine);
      expect(engine.releaseCounts()[lease]).toBe(0);
      aborted.abort();
      await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release after the client left');
      sse.finish();
      await new Promise((r) => setTimeout(r, 100));
      expect(engine.releaseCounts()[lease]).toBe(1);
    });

    it('an account without max_concurrency keeps the cheap path: slot freed at the response headers, body never held', async () => {
      const sentBefore = await stat('stream_msgs_sent');
      const sse = heldSse();
      upstream.enqueue(sse.reply);
      const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
      const reader = res.body!.getReader();
      await firstChunk(reader);
      const lease = lastLease(engine);
      await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release at the response headers');
      sse.finish();
      await restOfBody(reader);
      expect(engine.releaseCounts()[lease]).toBe(1);
      expect((await stat('stream_msgs_sent')) - sentBefore).toBe(2);
    });

    it('an HTTP/2 provider that sends trailers: keypool answers them and frees the slot there', async () => {
      engine.holdsConcurrencySlot = true;
      const h2 = await startTrailingProvider();
      const config = parse(
        renderEnvoyConfig('envoy/envoy.yaml', { keypoolPort: keypool.port, upstreams: { openai: h2.port, anthropic: h2.port } }),
      ) as { static_resources: { clusters: Array<Record<string, unknown>> } };
      const openai = config.static_resources.clusters.find((c) => c['name'] === 'openai')!;
      openai['typed_extension_protocol_options'] = {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: {} },
        },
      };
      const variant = await startEnvoy({ bin: ENVOY as string, config: stringify(config) });
      try {
        const res = await post(variant, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        expect(await firstChunk(reader)).toContain('data: 1');
        const lease = lastLease(engine);
        expect(engine.releaseCounts()[lease]).toBe(0);
        h2.finish();
        expect(await restOfBody(reader)).toContain('[DONE]');
        await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release at the trailers');
        expect(await envoyStat(variant.adminUrl, 'http.llm_gateway.ext_proc.keypool.stream_msgs_sent')).toBe(3);
        expect(await envoyStat(variant.adminUrl, 'http.llm_gateway.ext_proc.keypool.spurious_msgs_received')).toBe(0);
      } finally {
        await variant.stop();
        await h2.stop();
      }
    });

    it('keypool draining past its timeout lets a held streamed response finish (clean end, slot freed once)', async () => {
      engine.holdsConcurrencySlot = true;
      const draining = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, drainTimeoutMs: 200 });
      const variant = await startEnvoy({
        bin: ENVOY as string,
        config: renderEnvoyConfig('envoy/envoy.yaml', { keypoolPort: draining.port, upstreams: { openai: upstream.port, anthropic: upstream.port } }),
      });
      try {
        const sse = heldSse();
        upstream.enqueue(sse.reply);
        const res = await post(variant, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
        const reader = res.body!.getReader();
        await firstChunk(reader);
        const lease = lastLease(engine);
        await draining.shutdown();
        expect(engine.releaseCounts()[lease]).toBe(1);
        sse.finish();
        expect(await restOfBody(reader)).toContain('[DONE]');
        expect(await envoyStat(variant.adminUrl, 'http.llm_gateway.ext_proc.keypool.streams_failed')).toBe(0);
      } finally {
        await variant.stop();
        await draining.shutdown();
      }
    });
  });

  it('gRPC health: Envoy sees keypool healthy when ready, unhealthy when not', async () => {
    await waitForAsync(async () => (await clusterHealthFlags(envoy.adminUrl, 'keypool')).includes('healthy'), 5_000, 'healthy');
    engine.ready = false;
    try {
      await waitForAsync(async () => (await clusterHealthFlags(envoy.adminUrl, 'keypool')).some((f) => f.includes('failed_active_hc')), 5_000, 'unhealthy');
    } finally {
      engine.ready = true;
    }
    await waitForAsync(async () => (await clusterHealthFlags(envoy.adminUrl, 'keypool')).includes('healthy'), 5_000, 'healthy again');
  });

  // Last in this suite: it stops keypool.
  it('keypool down: Envoy answers 5xx and the upstream never sees the request', async () => {
    await keypool.shutdown();
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBeGreaterThanOrEqual(500);
    await res.text();
    expect(upstream.received).toHaveLength(0);
  });
});

describe.skipIf(!ENVOY)('envoy/envoy-failover.yaml (ext_proc as an upstream filter) through a real Envoy', () => {
  let engine: TestEngine;
  const upstream = new MockUpstream();
  let keypool: ExtProcServer;
  let envoy: RunningEnvoy;

  beforeAll(async () => {
    engine = await createTestEngine();
    const upstreamPort = await upstream.start();
    keypool = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger });
    envoy = await startEnvoy({
      bin: ENVOY as string,
      config: renderEnvoyConfig('envoy/envoy-failover.yaml', {
        keypoolPort: keypool.port,
        upstreams: { openai: upstreamPort, anthropic: upstreamPort },
      }),
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.shutdown();
    await upstream.stop();
  });

  beforeEach(async () => {
    upstream.reset();
    engine.views.length = 0;
    engine.observed.length = 0;
    engine.holdsConcurrencySlot = false;
    engine.failAdmissions = false;
    // The clock is frozen: a cooldown from an earlier test (a 429) would last for ever.
    await engine.resetState();
  });

  it('an account with max_concurrency: the attempt holds its slot until its streamed body ends, then frees it once', async () => {
    engine.holdsConcurrencySlot = true;
    const sse = heldSse();
    upstream.enqueue(sse.reply);
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect(await firstChunk(reader)).toContain('"delta":"Hel"');
    const lease = lastLease(engine);
    await new Promise((r) => setTimeout(r, 300));
    expect(engine.releaseCounts()[lease]).toBe(0);
    sse.finish();
    expect(await restOfBody(reader)).toContain('[DONE]');
    await waitFor(() => engine.releaseCounts()[lease] === 1, 2_000, 'release at the end of the body');
    expect(await envoyStat(envoy.adminUrl, 'cluster.openai.ext_proc.keypool.spurious_msgs_received')).toBe(0);
  });

  it('a 429 on the first attempt is retried with a different credential; the client sees 200', async () => {
    upstream.enqueue({
      status: 429,
      headers: { 'content-type': 'application/json', 'retry-after': '20' },
      body: '{"error":{"type":"rate_limit_error"}}',
    });
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` }, '{"model":"m","stream":false}');
    expect(res.status).toBe(200);
    await res.text();

    expect(upstream.received).toHaveLength(2);
    const [first, second] = upstream.received;
    expect(first?.headers['authorization']).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(second?.headers['authorization']).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(second?.headers['authorization']).not.toBe(first?.headers['authorization']);
    expect(second?.body).toBe('{"model":"m","stream":false}'); // body replayed
    for (const r of upstream.received) expect(allHeaderValues(r.headers)).not.toContain(CLIENT_KEY);

    // One decision and one observation per attempt; every ticket released once.
    expect(engine.views).toHaveLength(2);
    await waitFor(() => engine.observed.length === 2, 2_000, 'observations');
    expect(engine.observed.map((o) => o.status)).toEqual([429, 200]);
    await waitFor(() => Object.values(engine.releaseCounts()).every((n) => n === 1), 2_000, 'releases');
  });

  it('provider via cluster-level initial_metadata, client address via source.address', async () => {
    const res = await post(envoy, MESSAGES, { 'x-api-key': CLIENT_KEY });
    expect(res.status).toBe(200);
    await res.text();
    expect(engine.views[0]?.provider).toBe('anthropic');
    expect(engine.views[0]?.clientAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(upstream.received[0]?.headers['x-api-key']).toMatch(/^sk-ant-[ab]$/);
  });

  it('Envoy 1.40 also applies a route\'s ExtProcPerRoute overrides to the upstream ext_proc filter', async () => {
    // Variant of the shipped failover config: provider only from the route, not from the cluster.
    const config = parse(
      renderEnvoyConfig('envoy/envoy-failover.yaml', {
        keypoolPort: keypool.port,
        upstreams: { openai: upstream.port, anthropic: upstream.port },
      }),
    ) as FailoverConfig;
    const cluster = config.static_resources.clusters.find((c) => c.name === 'openai')!;
    const extProc = cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']!.http_filters[0]!;
    delete extProc.typed_config.grpc_service.initial_metadata;
    const route = config.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.route_config.virtual_hosts[0]!.routes[0]!;
    route.typed_per_filter_config = {
      'envoy.filters.http.ext_proc': {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
        overrides: { grpc_initial_metadata: [{ key: 'x-keypool-provider', value: 'openai' }] },
      },
    };
    const variant = await startEnvoy({ bin: ENVOY as string, config: stringify(config) });
    try {
      const res = await post(variant, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
      expect(res.status).toBe(200);
      await res.text();
      expect(engine.views[0]?.provider).toBe('openai');
    } finally {
      await variant.stop();
    }
  });

  it('a keypool denial is answered once and not retried', async () => {
    await engine.coolDown('openai', 7);
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(await res.json()).toMatchObject({ error: { code: 'pool_exhausted' } });
    expect(upstream.received).toHaveLength(0);
    expect(engine.views).toHaveLength(1);
  });

  it('keypool down: 5xx and the upstream never sees the request', async () => {
    await keypool.shutdown();
    const res = await post(envoy, CHAT, { authorization: `Bearer ${CLIENT_KEY}` });
    expect(res.status).toBeGreaterThanOrEqual(500);
    await res.text();
    expect(upstream.received).toHaveLength(0);
  });
});

/** An SSE reply whose first event goes out at once and whose end waits for finish(). */
function heldSse(): { reply: Reply; finish: () => void } {
  let finish!: () => void;
  const held = new Promise<void>((resolve) => (finish = resolve));
  return { reply: { sse: true, first: 'data: {"delta":"Hel"}\n\n', holdUntil: held, rest: 'data: [DONE]\n\n' }, finish };
}

/** The most recent allow's lease, as releaseCounts() names it (`lease-N`: the N-th lease issued). */
function lastLease(engine: TestEngine): string {
  if (engine.issued.length === 0) throw new Error('no ticket issued');
  return `lease-${engine.issued.length}`;
}

/** An HTTP/2 provider answering SSE whose end (last event, then trailers) waits for finish(). */
async function startTrailingProvider(): Promise<{ port: number; finish: () => void; stop: () => Promise<void> }> {
  let finish!: () => void;
  const held = new Promise<void>((resolve) => (finish = resolve));
  const server: Http2Server = createHttp2Server();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined); // Envoy resetting a stream at teardown is not this test's concern
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-usage-tokens': '42' }));
      stream.write('data: 1\n\n');
      void held.then(() => stream.end('data: [DONE]\n\n'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    finish,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Just the parts of envoy-failover.yaml the route-override test edits. */
interface FailoverConfig {
  static_resources: {
    clusters: Array<{
      name: string;
      typed_extension_protocol_options: Record<
        string,
        { http_filters: Array<{ typed_config: { grpc_service: { initial_metadata?: unknown } } }> }
      >;
    }>;
    listeners: Array<{
      filter_chains: Array<{
        filters: Array<{
          typed_config: { route_config: { virtual_hosts: Array<{ routes: Array<{ typed_per_filter_config?: unknown }> }> } };
        }>;
      }>;
    }>;
  };
}

