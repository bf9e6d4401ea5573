// Token usage with in-request failover through the REAL Envoy (envoy/envoy-failover-usage.yaml, ports rewritten):
// keypool's deciding ext_proc runs as an upstream filter once per attempt, the `keypool.usage` observer as a listener
// filter once per request. A first attempt answered 429 is retried on the other account; the usage the provider reports
// on the successful attempt must be recorded exactly once, for THAT account (the last attempt's ticket replaces the
// first's under the request's x-request-id: src/adapters/envoy/usage-tickets.ts).
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import type { TokenUsage } from '../../src/core/usage.js';
import { REPO_ROOT, envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, validateEnvoyConfig, type RunningEnvoy } from '../helpers/envoy.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';
import { json, OPENAI_JSON, OPENAI_JSON_USAGE, OPENAI_SSE, OPENAI_SSE_USAGE, stream } from '../helpers/usage-bodies.js';
import { waitFor } from './ext-proc-client.js';
import { MockUpstream, type Reply } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/usage-failover-real.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });
const CHAT = '/openai/v1/chat/completions';
const AUTH = { authorization: `Bearer ${TEST_KEYS.live}` };
const FILE = 'envoy/envoy-failover-usage.yaml';

const load = (file: string) => parse(readFileSync(`${REPO_ROOT}${file}`, 'utf8')) as Record<string, any>;
const hcmOf = (config: Record<string, any>) => config['static_resources'].listeners[0].filter_chains[0].filters[0].typed_config;

describe(FILE, () => {
  it('is envoy/envoy-failover.yaml plus the keypool.usage filter of envoy-usage.yaml and its per-route switch, nothing else', () => {
    const failover = load('envoy/envoy-failover.yaml');
    const config = load(FILE);
    const hcm = hcmOf(config);
    expect(hcm.http_filters.map((f: { name: string }) => f.name)).toEqual(['keypool.usage', 'envoy.filters.http.router']);
    // The very observer of envoy-usage.yaml: same forward_rules, observability_mode, failure_mode_allow, modes.
    const usageObserver = hcmOf(load('envoy/envoy-usage.yaml')).http_filters.find((f: { name: string }) => f.name === 'keypool.usage');
    expect(hcm.http_filters[0]).toEqual(usageObserver);
    hcm.http_filters.splice(0, 1);
    for (const host of hcm.route_config.virtual_hosts) {
      for (const route of host.routes) {
        if (route.typed_per_filter_config === undefined) continue;
        expect(route.typed_per_filter_config['keypool.usage']).toEqual({ '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute', disabled: true });
        // Only Envoy's own 404 route: a provider route's ExtProcPerRoute would reach the upstream filter too.
        expect(route.direct_response).toBeDefined();
        delete route.typed_per_filter_config['keypool.usage'];
        if (Object.keys(route.typed_per_filter_config).length === 0) delete route.typed_per_filter_config;
      }
    }
    expect(config).toEqual(failover);
  });
});

describe.skipIf(!ENVOY)(FILE, () => {
  it('passes envoy --mode validate', async () => {
    const result = await validateEnvoyConfig(ENVOY as string, `${REPO_ROOT}${FILE}`);
    expect(result.output).toContain('OK');
    expect(result.code).toBe(0);
  });
});

describe.skipIf(!ENVOY)(`token usage with in-request failover through a real Envoy (${FILE})`, () => {
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
      config: renderEnvoyConfig(FILE, { keypoolPort: keypool.port, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 }),
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.shutdown();
    await upstream.stop();
  });

  beforeEach(async () => {
    upstream.reset();
    engine.usage.length = 0;
    engine.views.length = 0;
    engine.observed.length = 0;
    await engine.flushWrites();
    engine.writes.usage.length = 0;
    // The clock is frozen: the 429's cooldown from an earlier test would last for ever.
    await engine.resetState();
  });

  const RATE_LIMITED: Reply = {
    status: 429,
    headers: { 'content-type': 'application/json', 'retry-after': '20' },
    body: '{"error":{"type":"rate_limit_error","message":"slow down"}}',
  };

  it.each<[string, Reply, TokenUsage]>([
    ['JSON', json(OPENAI_JSON), OPENAI_JSON_USAGE],
    ['SSE with include_usage', stream(OPENAI_SSE), OPENAI_SSE_USAGE],
  ])('429 then success on the other account (%s): the usage is recorded once, for the account that served it', async (_name, success, expected) => {
    upstream.enqueue(RATE_LIMITED);
    upstream.enqueue(success);
    const res = await fetch(`${envoy.baseUrl}${CHAT}`, { method: 'POST', headers: { 'content-type': 'application/json', ...AUTH }, body: '{"model":"m"}' });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).toBe((success as { body: string }).body);

    // Two attempts on two accounts, each decided by keypool.
    expect(upstream.received).toHaveLength(2);
    const keys = upstream.received.map((r) => r.headers['authorization']);
    expect(keys[0]).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(keys[1]).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(keys[1]).not.toBe(keys[0]);
    expect(engine.views).toHaveLength(2);
    const served = `openai-${String(keys[1]).slice(-1)}`;

    await waitFor(() => engine.usage.length >= 1, 5_000, 'recorded usage');
    // Give a second (wrong) recording the time to show up before asserting there is none.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(engine.usage).toHaveLength(1);
    expect(engine.usage[0]!.usage).toEqual(expected);
    expect(engine.usage[0]!.ticket.accountName).toBe(served);

    // The account bucket that got the tokens is the serving account's, and the only one.
    await engine.flushWrites();
    const withTokens = engine.writes.usage.filter((r) => r.inputTokens > 0 || r.outputTokens > 0);
    expect(withTokens.map((r) => r.accountId)).toEqual([engine.usage[0]!.ticket.accountId]);
    expect([withTokens[0]!.inputTokens, withTokens[0]!.outputTokens, withTokens[0]!.cachedInputTokens]).toEqual([
      expected.inputTokens,
      expected.outputTokens,
      expected.cachedInputTokens,
    ]);
  });

  it('the observer runs once per request, not per attempt, and never fails one', async () => {
    const before = await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool_usage.streams_started');
    upstream.enqueue(RATE_LIMITED);
    upstream.enqueue(json(OPENAI_JSON));
    const res = await fetch(`${envoy.baseUrl}${CHAT}`, { method: 'POST', headers: { 'content-type': 'application/json', ...AUTH }, body: '{"model":"m"}' });
    expect(res.status).toBe(200);
    await res.text();
    expect(upstream.received).toHaveLength(2);
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    expect((await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool_usage.streams_started')) - before).toBe(1);
    expect(await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool_usage.streams_failed')).toBe(0);
  });
});
