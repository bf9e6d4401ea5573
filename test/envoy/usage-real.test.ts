// Token usage through the REAL Envoy (envoy/envoy-usage.yaml, ports rewritten): keypool's deciding filter plus the
// `keypool.usage` observer in observability_mode, keypool's real ext_proc server over the real engine
// (test/helpers/test-engine.ts), and a mock provider that reports usage in JSON and SSE bodies. The recorded usage
// must equal the provider's figures exactly (normalised: src/core/usage.ts), and reach the account and key buckets.
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { parse } from 'yaml';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import type { TokenUsage } from '../../src/core/usage.js';
import { REPO_ROOT, envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, validateEnvoyConfig, type RunningEnvoy } from '../helpers/envoy.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';
import { waitFor } from './ext-proc-client.js';
import { MockUpstream, type Reply } from './mock-upstream.js';
import { chunk, json, OPENAI_JSON, OPENAI_SSE, sse, stream, usage } from '../helpers/usage-bodies.js';

const ENVOY = envoyOrSkip('test/envoy/usage-real.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });
const CHAT = '/openai/v1/chat/completions';
const MESSAGES = '/anthropic/v1/messages';
const AUTH = { authorization: `Bearer ${TEST_KEYS.live}` };

// No usage chunk (the client did not ask for include_usage): 10 chunks of "abcdefg" = 70 characters -> 18 tokens.
const OPENAI_SSE_NO_USAGE = sse([...Array.from({ length: 10 }, () => chunk('abcdefg')), '[DONE]']);
const ANTHROPIC_SSE = [
  `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { model: 'claude', usage: { input_tokens: 25, output_tokens: 1, cache_read_input_tokens: 200, cache_creation_input_tokens: 50 } } })}\n\n`,
  `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } })}\n\n`,
  `event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } })}\n\n`,
  `event: message_stop\ndata: {"type":"message_stop"}\n\n`,
].join('');

describe('envoy/envoy-usage.yaml', () => {
  it('is envoy/envoy.yaml plus the keypool.usage filter and its per-route switches, nothing else', () => {
    const shipped = parse(readFileSync(`${REPO_ROOT}envoy/envoy.yaml`, 'utf8')) as Record<string, any>;
    const usage = parse(readFileSync(`${REPO_ROOT}envoy/envoy-usage.yaml`, 'utf8')) as Record<string, any>;
    const hcm = usage['static_resources'].listeners[0].filter_chains[0].filters[0].typed_config;
    const names = hcm.http_filters.map((f: { name: string }) => f.name);
    expect(names).toEqual(['envoy.filters.http.ext_proc', 'keypool.usage', 'envoy.filters.http.router']);
    const observer = hcm.http_filters[1].typed_config;
    expect(observer).toMatchObject({ observability_mode: true, failure_mode_allow: true, processing_mode: { response_body_mode: 'STREAMED', request_body_mode: 'NONE' } });
    hcm.http_filters.splice(1, 1);
    for (const host of hcm.route_config.virtual_hosts) for (const route of host.routes) delete route.typed_per_filter_config?.['keypool.usage'];
    expect(usage).toEqual(shipped);
  });
});

describe.skipIf(!ENVOY)('envoy/envoy-usage.yaml', () => {
  it('passes envoy --mode validate', async () => {
    const result = await validateEnvoyConfig(ENVOY as string, `${REPO_ROOT}envoy/envoy-usage.yaml`);
    expect(result.output).toContain('OK');
    expect(result.code).toBe(0);
  });
});

describe.skipIf(!ENVOY)('token usage through a real Envoy (envoy/envoy-usage.yaml)', () => {
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
      config: renderEnvoyConfig('envoy/envoy-usage.yaml', { keypoolPort: keypool.port, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 }),
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
    // Earlier tests' queued writes are written and forgotten: each test sees its own buckets only.
    await engine.flushWrites();
    engine.writes.usage.length = 0;
    engine.writes.tokens.length = 0;
    await engine.resetState();
  });

  async function call(path: string, reply: Reply): Promise<string> {
    upstream.enqueue(reply);
    const res = await fetch(`${envoy.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...AUTH }, body: '{"model":"m"}' });
    const text = await res.text();
    expect(res.status, text).toBe('status' in reply ? reply.status : 200);
    return text;
  }

  it.each<[string, string, Reply, TokenUsage, string | null]>([
    ['OpenAI JSON', CHAT, json(OPENAI_JSON), usage(1200, 34, 1024), 'gpt-4o-2024-08-06'],
    ['OpenAI SSE with include_usage', CHAT, stream(OPENAI_SSE), usage(57, 81), null],
    ['Anthropic SSE (message_start + message_delta)', MESSAGES, stream(ANTHROPIC_SSE), usage(275, 15, 200, 50), 'claude'],
    ['OpenAI gzip-encoded JSON', CHAT, json(gzipSync(OPENAI_JSON), { 'content-encoding': 'gzip' }), usage(1200, 34, 1024), 'gpt-4o-2024-08-06'],
    ['OpenAI SSE without usage: estimated from the text', CHAT, stream(OPENAI_SSE_NO_USAGE), usage(0, 18, 0, 0, true), null],
  ])('%s: the recorded usage is the provider\'s', async (_name, path, reply, expected, model) => {
    const text = await call(path, reply);
    // The client got the body untouched (the observer never answers).
    if (typeof (reply as { body?: unknown }).body === 'string') expect(text).toBe((reply as { body: string }).body);
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    expect(engine.usage[0]!.usage).toEqual(expected);
    expect(engine.usage[0]!.model).toBe(model);
    expect(engine.usage[0]!.ticket.pool).toBe(path === MESSAGES ? 'anthropic' : 'openai');
  });

  it('records nothing for a GET of a stored response (its usage was counted when it was created)', async () => {
    upstream.enqueue(json(OPENAI_JSON));
    const stored = await fetch(`${envoy.baseUrl}/openai/v1/chat/completions/chatcmpl-123`, { headers: AUTH });
    expect(stored.status).toBe(200);
    expect(await stored.text()).toContain('"usage"');
    await call(CHAT, json(OPENAI_JSON));
    await waitFor(() => engine.usage.length >= 1, 5_000, 'recorded usage');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(engine.usage).toHaveLength(1);
  });

  it('records nothing for an error answer or a body without usage', async () => {
    await call(CHAT, { status: 429, headers: { 'content-type': 'application/json', 'retry-after': '1' }, body: '{"error":{"message":"slow down"}}' });
    await call(CHAT, json('{"object":"chat.completion","choices":[]}'));
    // The next request's usage arrives, and is the only one.
    await call(CHAT, json(OPENAI_JSON));
    await waitFor(() => engine.usage.length >= 1, 5_000, 'recorded usage');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(engine.usage.map((u) => u.usage)).toEqual([usage(1200, 34, 1024)]);
  });

  it('the usage of several requests reaches the account and key buckets exactly', async () => {
    for (let i = 0; i < 3; i++) await call(CHAT, json(OPENAI_JSON));
    await call(CHAT, stream(OPENAI_SSE));
    await waitFor(() => engine.usage.length === 4, 5_000, 'recorded usage');
    await engine.flushWrites();
    const sum = <T,>(rows: readonly T[], pick: (row: T) => number) => rows.reduce((n, row) => n + pick(row), 0);
    const accounts = engine.writes.usage;
    expect([sum(accounts, (r) => r.inputTokens), sum(accounts, (r) => r.outputTokens), sum(accounts, (r) => r.cachedInputTokens)]).toEqual([
      3 * 1200 + 57,
      3 * 34 + 81,
      3 * 1024,
    ]);
    const tokens = engine.writes.tokens.filter((t) => t.provider === 'openai');
    expect(sum(tokens, (t) => t.requests)).toBe(4);
    expect(sum(tokens, (t) => t.inputTokens)).toBe(3 * 1200 + 57);
    expect(new Set(tokens.map((t) => t.tenantId))).toEqual(new Set(['acme']));
    // The observer's stream never failed a request, and never answered in observability mode.
    expect(await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool_usage.streams_failed')).toBe(0);
    expect(await envoyStat(envoy.adminUrl, 'http.llm_gateway.ext_proc.keypool_usage.streams_started')).toBeGreaterThanOrEqual(4);
  });
});
