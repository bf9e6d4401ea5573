// Model-aware pools and provider error bodies through the REAL Envoy (envoy/envoy.yaml and envoy/envoy-failover.yaml as
// shipped, ports rewritten), keypool's real ext_proc server over the real engine, and a mock provider.
// The openai pool routes by model (openai-a serves gpt-4o*, openai-b serves o1), so keypool asks Envoy for its
// request bodies; the anthropic pool restricts nothing, so its requests stay headers-only.
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import { createTestEngine, TEST_KEYS, TEST_NOW_MS, type TestEngine } from '../helpers/test-engine.js';
import { waitFor } from './ext-proc-client.js';
import { MockUpstream, firstChunk, restOfBody } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/models-real.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });
const CLIENT_KEY = TEST_KEYS.live;
const CHAT = '/openai/v1/chat/completions';
const MESSAGES = '/anthropic/v1/messages';
const ACCOUNT_MODELS = { 'openai-a': ['gpt-4o*'], 'openai-b': ['o1'] };

function post(envoy: RunningEnvoy, path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${envoy.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, 'x-api-key': CLIENT_KEY, ...headers },
    body,
  });
}

const chat = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });

interface Setup {
  engine: TestEngine;
  upstream: MockUpstream;
  keypool: ExtProcServer;
  envoy: RunningEnvoy;
}

async function setUp(
  file: string,
  edit: (config: string) => string = (config) => config,
  accountModels: Readonly<Record<string, readonly string[]>> = ACCOUNT_MODELS,
): Promise<Setup> {
  const engine = await createTestEngine({ accountModels });
  const upstream = new MockUpstream();
  const upstreamPort = await upstream.start();
  const keypool = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, healthPollMs: 50 });
  const envoy = await startEnvoy({
    bin: ENVOY as string,
    config: edit(renderEnvoyConfig(file, { keypoolPort: keypool.port, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 })),
  });
  return { engine, upstream, keypool, envoy };
}

async function tearDown(setup: Setup | undefined): Promise<void> {
  await setup?.envoy.stop();
  await setup?.keypool.shutdown();
  await setup?.upstream.stop();
}

function accountId(engine: TestEngine, name: string): string {
  const issued = engine.issued.find((ticket) => ticket.accountName === name);
  if (issued) return issued.accountId;
  throw new Error(`no ticket for ${name} yet`);
}

describe.skipIf(!ENVOY)('model routing through a real Envoy (envoy/envoy.yaml)', () => {
  let s: Setup;
  const stat = (name: string) => envoyStat(s.envoy.adminUrl, `http.llm_gateway.ext_proc.keypool.${name}`);

  beforeAll(async () => {
    s = await setUp('envoy/envoy.yaml');
  });
  afterAll(() => tearDown(s));
  beforeEach(async () => {
    s.upstream.reset();
    s.engine.views.length = 0;
    s.engine.observed.length = 0;
    await s.engine.resetState();
  });

  it('routes each model to the account that serves it; the mutation from the body answer reaches the upstream', async () => {
    for (const [model, secret] of [
      ['gpt-4o', 'sk-openai-a'],
      ['gpt-4o-mini', 'sk-openai-a'],
      ['o1', 'sk-openai-b'],
      ['gpt-4o-2024-08-06', 'sk-openai-a'],
    ] as const) {
      const res = await post(s.envoy, CHAT, chat(model));
      expect(res.status, model).toBe(200);
      await res.text();
      const got = s.upstream.received.at(-1)!;
      expect(got.headers['authorization'], model).toBe(`Bearer ${secret}`);
      expect(got.headers['x-keypool-priority']).toBe('1');
      expect(JSON.stringify(got.headers)).not.toContain(CLIENT_KEY);
      // The body goes on exactly as sent (keypool never mutates it).
      expect(got.body).toBe(chat(model));
    }
    expect(s.engine.issued.at(-1)?.model).toBe('gpt-4o-2024-08-06');
    expect(await stat('rejected_header_mutations')).toBe(0);
    expect(await stat('spurious_msgs_received')).toBe(0);
  });

  it('a request without a body (GET /v1/models) names no model: any account serves it, nothing buffered', async () => {
    const res = await fetch(`${s.envoy.baseUrl}/openai/v1/models`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
    expect(res.status).toBe(200);
    await res.text();
    expect(s.upstream.received.at(-1)?.headers['authorization']).toMatch(/^Bearer sk-openai-[ab]$/);
    expect(s.engine.issued.at(-1)?.model).toBeNull();
  });

  it('a refused key on a pool that routes by model is answered on its headers: no body asked for', async () => {
    const sentBefore = await stat('stream_msgs_sent');
    const res = await post(s.envoy, CHAT, chat('gpt-4o'), { authorization: 'Bearer kp_nope', 'x-api-key': 'kp_nope' });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    // Only the request headers went to keypool.
    expect((await stat('stream_msgs_sent')) - sentBefore).toBe(1);
    expect(s.upstream.received).toHaveLength(0);
  });

  it('a model no account serves: 400 model_not_available in OpenAI shape; the upstream never sees it', async () => {
    const res = await post(s.envoy, CHAT, chat('gpt-5'));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { type: 'invalid_request_error', code: 'model_not_available', message: 'No upstream credential for this provider serves the model "gpt-5".' },
    });
    expect(s.upstream.received).toHaveLength(0);
  });

  it.each([
    ['not JSON', 'model=gpt-4o', 'not a JSON object'],
    ['no model', '{"messages":[]}', 'no "model" string'],
    ['a JSON array', '[{"model":"gpt-4o"}]', 'not a JSON object'],
  ])('%s: 400 invalid_request; the upstream never sees the request (with or without the client key)', async (_label, body, message) => {
    const res = await post(s.envoy, CHAT, body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe('invalid_request');
    expect(json.error.message).toContain(message);
    expect(s.upstream.received).toHaveLength(0);
  });

  it('a body over the buffer limit: 400 invalid_request, never forwarded', async () => {
    const res = await post(s.envoy, CHAT, JSON.stringify({ model: 'gpt-4o', pad: 'x'.repeat(3 * 1024 * 1024) }));
    // BUFFERED_PARTIAL: Envoy passes keypool the first part (its buffer limit) and says more follows; keypool refuses.
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_request' } });
    expect(s.upstream.received).toHaveLength(0);
  });

  it('insufficient_quota: the client gets the provider answer unchanged; the account is disabled durably and held out', async () => {
    const body = JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } });
    s.upstream.enqueue({ status: 429, headers: { 'content-type': 'application/json' }, body });
    const res = await post(s.envoy, CHAT, chat('gpt-4o'));
    expect(res.status).toBe(429);
    expect(await res.text()).toBe(body);
    const id = accountId(s.engine, 'openai-a');
    // Committed before the answer: the durable write was asked for and the state holds the account out.
    expect(s.engine.writes.invalidated).toContainEqual({ accountId: id, reason: expect.stringContaining('quota_exhausted'), as: 'disabled' });
    expect(s.engine.observed.at(-1)?.options.body).toBeDefined();
    const [view] = await s.engine.state.inspect('openai', [id], TEST_NOW_MS);
    expect(view?.invalid).toBe(true);
    const next = await post(s.envoy, CHAT, chat('gpt-4o'));
    expect(next.status).toBe(503);
    expect(await next.json()).toMatchObject({ error: { code: 'no_healthy_account' } });
  });

  it.each([
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
    ['deflate', deflateSync],
  ] as const)('insufficient_quota sent %s-compressed (the client accepts it): decoded, the account disabled; the client gets the compressed answer', async (encoding, compress) => {
    const body = JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } });
    const compressed = compress(body);
    s.upstream.enqueue({ status: 429, headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: compressed });
    const res = await post(s.envoy, CHAT, chat('gpt-4o'), { 'accept-encoding': 'gzip, deflate, br' });
    expect(res.status).toBe(429);
    // Still compressed as the provider sent it (fetch decodes it here): keypool only read it.
    expect(res.headers.get('content-encoding')).toBe(encoding);
    expect(await res.text()).toBe(body);
    expect(s.upstream.received.at(-1)?.headers['accept-encoding']).toBe('gzip, deflate, br');
    expect(Buffer.from(s.engine.observed.at(-1)!.options.body!).toString()).toBe(body);
    const id = accountId(s.engine, 'openai-a');
    expect(s.engine.writes.invalidated).toContainEqual({ accountId: id, reason: expect.stringContaining('quota_exhausted'), as: 'disabled' });
    const [view] = await s.engine.state.inspect('openai', [id], TEST_NOW_MS);
    expect(view?.invalid).toBe(true);
  });

  it('a 404 model_not_found leaves the credential valid and takes only that model off the account', async () => {
    const body = JSON.stringify({ error: { message: 'The model `o1` does not exist or you do not have access to it.', type: 'invalid_request_error', code: 'model_not_found' } });
    s.upstream.enqueue({ status: 404, headers: { 'content-type': 'application/json' }, body });
    const invalidatedBefore = s.engine.writes.invalidated.length;
    const res = await post(s.envoy, CHAT, chat('o1'));
    expect(res.status).toBe(404);
    expect(await res.text()).toBe(body);
    const id = accountId(s.engine, 'openai-b');
    expect(s.engine.writes.invalidated).toHaveLength(invalidatedBefore);
    const [view] = await s.engine.state.inspect('openai', [id], TEST_NOW_MS);
    expect(view?.invalid).toBe(false);
    expect(view?.health).toBe('healthy');
    expect(s.engine.engine.models.isRemoved(id, 'o1', TEST_NOW_MS)).toBe(true);
    // o1 had one account, now without it: refused before the upstream; other models still go to that account's pool.
    const again = await post(s.envoy, CHAT, chat('o1'));
    expect(again.status).toBe(400);
    expect(await again.json()).toMatchObject({ error: { code: 'model_not_available' } });
  });

  it('a 401 is still an invalid credential (its body read, nothing in it says otherwise)', async () => {
    s.upstream.enqueue({ status: 401, headers: { 'content-type': 'application/json' }, body: '{"error":{"code":"invalid_api_key","message":"Incorrect API key"}}' });
    const res = await post(s.envoy, CHAT, chat('gpt-4o-mini'));
    expect(res.status).toBe(401);
    await res.text();
    await waitFor(() => s.engine.writes.invalidated.some((entry) => entry.as === 'invalid'), 2_000, 'invalidation');
  });

  it('a headers-only route (anthropic: no model restriction) streams SSE unbuffered; no body reaches keypool', async () => {
    const sentBefore = await stat('stream_msgs_sent');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    s.upstream.enqueue({ sse: true, first: 'event: content_block_delta\ndata: {"delta":"Hel"}\n\n', holdUntil: held, rest: 'event: message_stop\ndata: {}\n\n' });
    const res = await post(s.envoy, MESSAGES, JSON.stringify({ model: 'claude-x', stream: true }));
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect(await firstChunk(reader)).toContain('"delta":"Hel"');
    release();
    expect(await restOfBody(reader)).toContain('message_stop');
    // Request and response headers only: neither body passed through keypool.
    expect((await stat('stream_msgs_sent')) - sentBefore).toBe(2);
  });

  it('a headers-only route forwards a body larger than any buffer limit', async () => {
    const large = JSON.stringify({ model: 'claude-x', pad: 'y'.repeat(3 * 1024 * 1024) });
    const res = await post(s.envoy, MESSAGES, large);
    expect(res.status).toBe(200);
    await res.text();
    expect(s.upstream.received.at(-1)?.body.length).toBe(large.length);
  });
});

describe.skipIf(!ENVOY)('model routing through a real Envoy (envoy/envoy-failover.yaml, ext_proc as an upstream filter)', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp('envoy/envoy-failover.yaml');
  });
  afterAll(() => tearDown(s));
  beforeEach(async () => {
    s.upstream.reset();
    await s.engine.resetState();
  });

  it('the header mutation of the body answer reaches the upstream; a model nobody serves is refused', async () => {
    const res = await post(s.envoy, CHAT, chat('o1'));
    expect(res.status).toBe(200);
    await res.text();
    expect(s.upstream.received.at(-1)?.headers['authorization']).toBe('Bearer sk-openai-b');
    expect(s.upstream.received.at(-1)?.body).toBe(chat('o1'));
    const refused = await post(s.envoy, CHAT, chat('gpt-5'));
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: { code: 'model_not_available' } });
    expect(s.upstream.received).toHaveLength(1);
  });

  it('a 429 on the account that serves the model is retried on the next one that serves it', async () => {
    s.upstream.enqueue({ status: 429, headers: { 'retry-after': '30', 'content-type': 'application/json' }, body: '{"error":{"code":"rate_limit_exceeded"}}' });
    const res = await post(s.envoy, CHAT, chat('gpt-4o'));
    // openai-a alone serves gpt-4o: the retry finds no account and answers the pool's 429 (not o1's account).
    expect(res.status).toBe(429);
    await res.text();
    expect(s.upstream.received.map((r) => r.headers['authorization'])).toEqual(['Bearer sk-openai-a']);
  });
});

/** The rendered config with the request-body entry left out of every ext_proc filter's allowed_override_modes. */
function withoutRequestBodyOverride(config: string): string {
  const doc = parse(config) as unknown;
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    const obj = node as Record<string, unknown>;
    const modes = obj['allowed_override_modes'];
    if (Array.isArray(modes)) obj['allowed_override_modes'] = modes.filter((m) => (m as Record<string, unknown>)['request_body_mode'] === 'NONE');
    Object.values(obj).forEach(visit);
  };
  visit(doc);
  return stringify(doc);
}

describe.skipIf(!ENVOY)('an Envoy without the request-body override entry (misconfigured)', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp('envoy/envoy.yaml', withoutRequestBodyOverride);
  });
  afterAll(() => tearDown(s));

  it('Envoy ignores the override and forwards at once; the request carries no credential, never the client key', async () => {
    const res = await post(s.envoy, CHAT, chat('gpt-4o'));
    await res.text();
    // Verified behaviour of Envoy 1.40: the override is dropped silently and the request goes upstream right away.
    expect(s.upstream.received).toHaveLength(1);
    const got = s.upstream.received[0]!;
    expect(got.headers['authorization']).toBeUndefined();
    expect(got.headers['x-api-key']).toBeUndefined();
    expect(JSON.stringify(got.headers)).not.toContain(CLIENT_KEY);
    // keypool never decided: the response is not the provider's 200 passed on as an allowed request's.
    expect(res.status).toBeGreaterThanOrEqual(500);
  });
});

describe.skipIf(!ENVOY)('failover between accounts that serve the same model (envoy/envoy-failover.yaml)', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp('envoy/envoy-failover.yaml', undefined, { 'openai-a': ['gpt-4o*'], 'openai-b': ['gpt-4o', 'o1'] });
  });
  afterAll(() => tearDown(s));

  it('a 429 is retried on the other account that serves the model: body replayed, decided again, pooled key of the other', async () => {
    s.upstream.enqueue({ status: 429, headers: { 'retry-after': '30', 'content-type': 'application/json' }, body: '{"error":{"code":"rate_limit_exceeded"}}' });
    const res = await post(s.envoy, CHAT, chat('gpt-4o'));
    expect(res.status).toBe(200);
    await res.text();
    expect(s.upstream.received.map((r) => r.headers['authorization'])).toEqual(['Bearer sk-openai-a', 'Bearer sk-openai-b']);
    expect(s.upstream.received.map((r) => r.body)).toEqual([chat('gpt-4o'), chat('gpt-4o')]);
    for (const r of s.upstream.received) expect(JSON.stringify(r.headers)).not.toContain(CLIENT_KEY);
  });
});
