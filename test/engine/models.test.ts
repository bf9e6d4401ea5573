// The engine with the request's model (the body's `model` on a pool that routes by model, or Gemini's path):
// provider-learned state per model where the provider limits per model (src/core/learned-state.ts), through the real
// runtime (in-memory PGlite, compiled snapshot, memory state).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { createLogger } from '../../src/log.js';
import { NO_REQUEST_BODY, type HeaderBag, type RequestView } from '../../src/core/types.js';
import type { Clock, RequestOutcome } from '../../src/ports.js';

const START_MS = Date.UTC(2026, 10, 22, 12, 0, 0);
let nowMs = START_MS;
const clock: Clock = { nowMs: () => nowMs };

let runtime: Runtime;
let key: string;

/** A request for `model` (null: one that names none, a GET without a body). */
function view(provider: string, model: string | null): RequestView {
  const authorization = `Bearer ${key}`;
  const clientAddress = '192.0.2.10:40000';
  if (provider === 'gemini') {
    const path = model === null ? '/v1beta/models' : `/v1beta/models/${model}:generateContent`;
    return { headers: { authorization, ':path': path }, clientAddress, provider };
  }
  const body = model === null ? NO_REQUEST_BODY : { bytes: Buffer.from(JSON.stringify({ model, messages: [] })), truncated: false };
  return { headers: { authorization, ':path': '/v1/chat/completions' }, clientAddress, provider, body };
}

async function decide(provider: string, model: string | null): Promise<RequestOutcome> {
  return runtime.engine.decide(view(provider, model));
}

/** Serves one request with the given upstream answer; the observation has settled when this returns. */
async function serve(provider: string, model: string | null, status: number, headers: HeaderBag = {}): Promise<string> {
  const outcome = await decide(provider, model);
  expect(outcome.decision.kind).toBe('allow');
  expect(outcome.ticket?.model).toBe(model);
  await runtime.engine.observe(outcome.ticket!, status, headers, { release: true });
  return outcome.ticket!.accountName;
}

beforeAll(async () => {
  runtime = await openRuntime({
    config: { databaseUrl: 'memory://', demoSeed: false, flushIntervalMs: 60_000, reloadIntervalMs: 600_000 },
    logger: createLogger('silent'),
    clock,
  });
  const repo = runtime.repository;
  for (const provider of ['openai', 'gemini']) {
    for (const name of [`${provider}-a`, `${provider}-b`]) {
      // OpenAI accounts route by model (the engine reads the body's model); Gemini's path names it.
      const models = provider === 'openai' ? ['gpt-*', 'o1'] : [];
      await repo.accounts.create({ providerSlug: provider, name, apiKey: `sk-test-${name}-0123456789`, models }, 'test');
    }
  }
  key = (await repo.keys.create({ name: 'models', allowedIps: [] }, 'test')).plaintextKey;
  await runtime.snapshots.reload();
}, 120_000);

afterAll(async () => {
  await runtime?.stop();
});

describe('per-model learned state through the engine', () => {
  it('a model cooling on every account leaves other models and unknown-model requests admitted (openai)', async () => {
    nowMs = START_MS + 10_000;
    const first = await serve('openai', 'gpt-4o', 429, { 'retry-after': '30' });
    const second = await serve('openai', 'gpt-4o', 429, { 'retry-after': '30' });
    expect(new Set([first, second]).size).toBe(2);
    const deny = (await decide('openai', 'gpt-4o')).decision;
    expect(deny).toMatchObject({ kind: 'deny', status: 429, code: 'pool_exhausted' });
    expect((await decide('openai', 'gpt-4o-mini')).decision.kind).toBe('allow');
    expect((await decide('openai', null)).decision.kind).toBe('allow');
    nowMs += 30_001;
    expect((await decide('openai', 'gpt-4o')).decision.kind).toBe('allow');
  });

  it("a model's exhausted request budget (x-ratelimit headers) parks only that model", async () => {
    nowMs = START_MS + 100_000;
    const spent = { 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '20s' };
    await serve('openai', 'o1', 200, spent);
    await serve('openai', 'o1', 200, spent);
    expect((await decide('openai', 'o1')).decision).toMatchObject({ kind: 'deny', code: 'pool_exhausted' });
    expect((await decide('openai', 'gpt-4o')).decision.kind).toBe('allow');
  });

  it('a provider without per-model limits (gemini) keeps one state per account: the model does not split it', async () => {
    nowMs = START_MS + 200_000;
    const first = await serve('gemini', 'gemini-2.0-flash', 429, { 'retry-after': '30' });
    const second = await serve('gemini', 'gemini-2.0-flash', 429, { 'retry-after': '30' });
    expect(new Set([first, second]).size).toBe(2);
    expect((await decide('gemini', 'gemini-1.5-pro')).decision).toMatchObject({ kind: 'deny', code: 'pool_exhausted' });
    expect((await decide('gemini', null)).decision).toMatchObject({ kind: 'deny', code: 'pool_exhausted' });
  });
});
