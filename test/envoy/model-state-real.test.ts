// Per-model learned state and quota scopes through the REAL Envoy (envoy/envoy.yaml as shipped, ports rewritten),
// keypool's real ext_proc server over the real engine, and a mock provider.
// - openai: per_model_state on, no account restricts its models: keypool asks Envoy for every request body only to
//   know the model, and keeps 429 cooldowns per (account or scope, model).
// - anthropic: per_model_state off, no model restrictions: headers-only, as before.
// The test engine's clock is frozen: a cooldown never runs out on its own, so each test uses its own model names and
// each describe its own keypool.
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import { createTestEngine, TEST_KEYS, type TestEngineOptions, type TestEngine } from '../helpers/test-engine.js';
import { MockUpstream, type ReceivedRequest, type Reply } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/model-state-real.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });
const CLIENT_KEY = TEST_KEYS.live;
const CHAT = '/openai/v1/chat/completions';
const MESSAGES = '/anthropic/v1/messages';

const chat = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
const rateLimited = (retryAfterSec: number): Reply => ({
  status: 429,
  headers: { 'retry-after': String(retryAfterSec), 'content-type': 'application/json' },
  body: '{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}',
});

function post(envoy: RunningEnvoy, path: string, body: string): Promise<Response> {
  return fetch(`${envoy.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, 'x-api-key': CLIENT_KEY },
    body,
  });
}

/** The pooled key a request reached the provider with (`sk-openai-a`), whatever header carried it. */
function pooledKey(request: ReceivedRequest | undefined): string | undefined {
  const bearer = request?.headers['authorization'];
  if (typeof bearer === 'string') return bearer.replace(/^Bearer /, '');
  const apiKey = request?.headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey : undefined;
}

interface Setup {
  engine: TestEngine;
  upstream: MockUpstream;
  keypool: ExtProcServer;
  envoy: RunningEnvoy;
}

async function setUp(options: TestEngineOptions, file = 'envoy/envoy.yaml'): Promise<Setup> {
  const engine = await createTestEngine(options);
  const upstream = new MockUpstream();
  const upstreamPort = await upstream.start();
  const keypool = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, healthPollMs: 50 });
  const envoy = await startEnvoy({
    bin: ENVOY as string,
    config: renderEnvoyConfig(file, { keypoolPort: keypool.port, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 }),
  });
  return { engine, upstream, keypool, envoy };
}

async function tearDown(setup: Setup | undefined): Promise<void> {
  await setup?.envoy.stop();
  await setup?.keypool.shutdown();
  await setup?.upstream.stop();
}

/** A chat body padded to `padBytes`: answered 200, reaching the provider whole with a pooled key, decided without a model. */
async function expectForwardedWithoutModel(s: Setup, padBytes: number): Promise<void> {
  const large = JSON.stringify({ model: 'gpt-4o', pad: 'y'.repeat(padBytes) });
  const res = await post(s.envoy, CHAT, large);
  expect(res.status).toBe(200);
  await res.text();
  expect(s.upstream.received.at(-1)?.body.length).toBe(large.length);
  expect(pooledKey(s.upstream.received.at(-1))).toMatch(/^sk-openai-[ab]$/);
  expect(JSON.stringify(s.upstream.received.at(-1)?.headers)).not.toContain(CLIENT_KEY);
  expect(s.engine.issued.at(-1)?.model).toBeNull();
}

async function expectPoolExhausted(res: Response): Promise<void> {
  expect(res.status).toBe(429);
  expect(await res.json()).toMatchObject({ error: { code: 'pool_exhausted' } });
}

describe.skipIf(!ENVOY)('per-model state through a real Envoy (openai: per_model_state on, no model restrictions)', () => {
  let s: Setup;
  const stat = (name: string) => envoyStat(s.envoy.adminUrl, `http.llm_gateway.ext_proc.keypool.${name}`);

  beforeAll(async () => {
    s = await setUp({ perModelState: ['openai'] });
  });
  afterAll(() => tearDown(s));
  beforeEach(() => {
    s.upstream.reset();
    s.engine.views.length = 0;
  });

  it('reads the body for the model although no account restricts models; the body goes on unchanged', async () => {
    const sentBefore = await stat('stream_msgs_sent');
    const res = await post(s.envoy, CHAT, chat('gpt-4.1'));
    expect(res.status).toBe(200);
    await res.text();
    expect(s.engine.issued.at(-1)?.model).toBe('gpt-4.1');
    expect(s.engine.views.at(-1)?.body).toBeDefined();
    // Request headers, request body, response headers.
    expect((await stat('stream_msgs_sent')) - sentBefore).toBe(3);
    expect(s.upstream.received.at(-1)?.body).toBe(chat('gpt-4.1'));
    expect(pooledKey(s.upstream.received.at(-1))).toMatch(/^sk-openai-[ab]$/);
    expect(JSON.stringify(s.upstream.received.at(-1)?.headers)).not.toContain(CLIENT_KEY);
  });

  it('gpt-4o rate-limited on every account: gpt-4o is refused 429 pool_exhausted, gpt-4o-mini still reaches the provider', async () => {
    s.upstream.respond = (request) => (request.body.includes('"gpt-4o"') ? rateLimited(60) : undefined);
    for (let i = 0; i < 2; i++) {
      const res = await post(s.envoy, CHAT, chat('gpt-4o'));
      expect(res.status).toBe(429);
      await res.text();
    }
    // Each account was tried once and cooled for gpt-4o.
    expect(s.upstream.received.map(pooledKey).sort()).toEqual(['sk-openai-a', 'sk-openai-b']);

    const refused = await post(s.envoy, CHAT, chat('gpt-4o'));
    await expectPoolExhausted(refused);
    expect(s.upstream.received).toHaveLength(2);

    for (let i = 0; i < 4; i++) {
      const res = await post(s.envoy, CHAT, chat('gpt-4o-mini'));
      expect(res.status).toBe(200);
      await res.text();
    }
    const mini = s.upstream.received.slice(2);
    expect(mini).toHaveLength(4);
    for (const request of mini) expect(request.body).toBe(chat('gpt-4o-mini'));
    // Both accounts still serve the other model (round-robin over the two).
    expect(new Set(mini.map(pooledKey))).toEqual(new Set(['sk-openai-a', 'sk-openai-b']));
  });

  it('on the per_model_state pool a body past the limit, or without a model, is decided without a model and forwarded whole', async () => {
    await expectForwardedWithoutModel(s, 3 * 1024 * 1024);

    const form = await fetch(`${s.envoy.baseUrl}/openai/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=b', authorization: `Bearer ${CLIENT_KEY}` },
      body: '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n',
    });
    expect(form.status).toBe(200);
    await form.text();
    expect(s.upstream.received.at(-1)?.body).toContain('whisper-1');
    expect(s.engine.issued.at(-1)?.model).toBeNull();
  });
});

describe.skipIf(!ENVOY)('per-model state under envoy-failover.yaml (8 MiB route buffer limit)', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp({ perModelState: ['openai'] }, 'envoy/envoy-failover.yaml');
  });
  afterAll(() => tearDown(s));

  it('a 5 MiB body reaches keypool as one ext_proc message larger than gRPC\'s usual 4 MiB: decided without a model, forwarded whole', async () => {
    // Over keypool's 1 MiB model read: no model, the account's own slot.
    await expectForwardedWithoutModel(s, 5 * 1024 * 1024);
  });
});

describe.skipIf(!ENVOY)('quota scopes through a real Envoy', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp({
      pools: { openai: ['sk-openai-a', 'sk-openai-b', 'sk-openai-c'], anthropic: ['sk-ant-a', 'sk-ant-b'] },
      accountScopes: { 'openai-a': 'openai-org-acme/project-x', 'openai-b': 'openai-org-acme/project-x', 'anthropic-a': 'ws-1', 'anthropic-b': 'ws-1' },
    });
  });
  afterAll(() => tearDown(s));
  beforeEach(() => s.upstream.reset());

  it('a 429 on one key of a scope: the next request is refused, not sent to the sibling key', async () => {
    s.upstream.enqueue(rateLimited(30));
    const first = await post(s.envoy, MESSAGES, JSON.stringify({ model: 'claude-x', max_tokens: 8 }));
    expect(first.status).toBe(429);
    await first.text();
    expect(s.upstream.received).toHaveLength(1);

    const next = await post(s.envoy, MESSAGES, JSON.stringify({ model: 'claude-x', max_tokens: 8 }));
    await expectPoolExhausted(next);
    // The other key shares the scope's limit: rotating to it would only spread the 429s.
    expect(s.upstream.received).toHaveLength(1);
  });

  it('an account outside the scope keeps serving while the scope cools; the siblings are never tried', async () => {
    // The provider rate-limits the first request that reaches sk-openai-a (round-robin gets there within three).
    let limited = false;
    s.upstream.respond = (request) => {
      if (limited || pooledKey(request) !== 'sk-openai-a') return undefined;
      limited = true;
      return rateLimited(30);
    };
    for (let i = 0; i < 3 && !limited; i++) await (await post(s.envoy, CHAT, chat('gpt-4o'))).text();
    expect(limited).toBe(true);
    const before = s.upstream.received.length;

    for (let i = 0; i < 4; i++) {
      const res = await post(s.envoy, CHAT, chat('gpt-4o'));
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(s.upstream.received.slice(before).map(pooledKey)).toEqual(['sk-openai-c', 'sk-openai-c', 'sk-openai-c', 'sk-openai-c']);
  });
});

describe.skipIf(!ENVOY)('per_model_state off, no model restrictions: headers-only (anthropic)', () => {
  let s: Setup;
  const stat = (name: string) => envoyStat(s.envoy.adminUrl, `http.llm_gateway.ext_proc.keypool.${name}`);

  beforeAll(async () => {
    s = await setUp({ perModelState: ['openai'] });
  });
  afterAll(() => tearDown(s));
  beforeEach(() => {
    s.upstream.reset();
    s.engine.views.length = 0;
  });

  it('keypool never asks for the body: only headers pass through it, a body past every buffer limit reaches the upstream whole', async () => {
    const sentBefore = await stat('stream_msgs_sent');
    // 3 MiB: more than Envoy's 1 MiB buffer limit, so it can only have gone through unbuffered.
    const large = JSON.stringify({ model: 'claude-x', pad: 'y'.repeat(3 * 1024 * 1024) });
    const res = await post(s.envoy, MESSAGES, large);
    expect(res.status).toBe(200);
    await res.text();
    expect(s.upstream.received.at(-1)?.body.length).toBe(large.length);
    expect(pooledKey(s.upstream.received.at(-1))).toMatch(/^sk-ant-[ab]$/);
    // Request headers and response headers only.
    expect((await stat('stream_msgs_sent')) - sentBefore).toBe(2);
    expect(s.engine.views.at(-1)?.body).toBeUndefined();
    expect(s.engine.issued.at(-1)?.model).toBeNull();
  });
});

describe.skipIf(!ENVOY)('per-model state with ext_proc as an upstream filter (envoy/envoy-failover.yaml)', () => {
  let s: Setup;

  beforeAll(async () => {
    s = await setUp({ perModelState: ['openai'] }, 'envoy/envoy-failover.yaml');
  });
  afterAll(() => tearDown(s));
  beforeEach(() => s.upstream.reset());

  it('a 429 for gpt-4o is retried on the other account and cools only gpt-4o; a body past the limit is forwarded whole', async () => {
    s.upstream.enqueue(rateLimited(60));
    const res = await post(s.envoy, CHAT, chat('gpt-4o'));
    expect(res.status).toBe(200);
    await res.text();
    const [first, second] = s.upstream.received;
    expect(pooledKey(second)).not.toBe(pooledKey(first));
    expect(second?.body).toBe(chat('gpt-4o'));
    expect(s.engine.issued.at(-1)?.model).toBe('gpt-4o');
    // The account that answered 429 still serves another model.
    s.upstream.reset();
    for (let i = 0; i < 2; i++) await (await post(s.envoy, CHAT, chat('gpt-4o-mini'))).text();
    expect(s.upstream.received.map(pooledKey)).toContain(pooledKey(first));

    const large = JSON.stringify({ model: 'gpt-4o', pad: 'y'.repeat(3 * 1024 * 1024) });
    const big = await post(s.envoy, CHAT, large);
    expect(big.status).toBe(200);
    await big.text();
    expect(s.upstream.received.at(-1)?.body.length).toBe(large.length);
    expect(JSON.stringify(s.upstream.received.at(-1)?.headers)).not.toContain(CLIENT_KEY);
  });
});
