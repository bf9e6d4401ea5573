// Exact TPM and token quotas through the real engine (in-memory PGlite, compiled snapshot, memory rate state): the
// request's estimate is reserved only where a token limit applies, a full account window answers 429, a token quota
// answers 429 quota_exceeded naming the token limit, and Engine.reconcileTokens gives the difference back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { createLogger } from '../../src/log.js';
import { needsBodyForTokens } from '../../src/admission-limits.js';
import { estimateRequestTokens } from '../../src/core/token-estimate.js';
import type { Deny, RequestView } from '../../src/core/types.js';
import type { Clock, RequestOutcome, Ticket } from '../../src/ports.js';

const START_MS = Date.UTC(2026, 10, 22, 12, 0, 0);
const clock: Clock & { advance(ms: number): void } = (() => {
  let nowMs = START_MS;
  return { nowMs: () => nowMs, advance: (ms: number) => void (nowMs += ms) };
})();

let runtime: Runtime;

/** ~100 bytes of chat body asking for `maxTokens` of output. */
function body(maxTokens: number): string {
  return JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello in five languages.' }], max_tokens: maxTokens });
}

function view(key: string, provider: string, requestBody: string | null): RequestView {
  const headers = { authorization: `Bearer ${key}`, ':path': '/v1/chat/completions', ':method': 'POST' };
  const body = requestBody === null ? {} : { body: { bytes: new TextEncoder().encode(requestBody), truncated: false } };
  return { headers, clientAddress: '192.0.2.10:40000', provider, ...body };
}

async function decide(key: string, provider: string, requestBody: string | null): Promise<RequestOutcome> {
  return runtime.engine.decide(view(key, provider, requestBody));
}

function ticketOf(outcome: RequestOutcome): Ticket {
  expect(outcome.decision.kind).toBe('allow');
  return outcome.ticket!;
}

function denial(outcome: RequestOutcome): Deny {
  expect(outcome.decision.kind).toBe('deny');
  return outcome.decision as Deny;
}

beforeAll(async () => {
  runtime = await openRuntime({
    config: { databaseUrl: 'memory://', demoSeed: false, flushIntervalMs: 60_000, reloadIntervalMs: 600_000 },
    logger: createLogger('silent'),
    clock,
  });
  await runtime.repository.accounts.create({ providerSlug: 'openai', name: 'tpm', apiKey: 'sk-test-tpm-0123456789', tpmLimit: 1000 }, 'test');
  await runtime.repository.accounts.create({ providerSlug: 'anthropic', name: 'free', apiKey: 'sk-ant-test-free-0123456789' }, 'test');
}, 120_000);

afterAll(async () => {
  await runtime?.stop();
});

describe('tokens through the engine', () => {
  it('account tpm_limit: the estimate is reserved, a full window answers 429, reconcile gives the difference back', async () => {
    const { plaintextKey } = await runtime.repository.keys.create({ name: 'plain' }, 'test');
    await runtime.snapshots.reload();
    const snapshot = runtime.snapshots.current()!;
    expect(needsBodyForTokens(snapshot, 'openai')).toBe(true);
    // No tpm_limit on the anthropic pool and no token quota anywhere yet: its bodies are not needed.
    expect(needsBodyForTokens(snapshot, 'anthropic')).toBe(false);
    expect(runtime.engine.needsBodyForTokens('openai')).toBe(true);
    expect(runtime.engine.needsBodyForTokens('anthropic')).toBe(false);

    const estimate = estimateRequestTokens(body(500), 1024);
    expect(estimate).toBeGreaterThan(500);
    expect(estimate).toBeLessThan(600);
    const first = ticketOf(await decide(plaintextKey, 'openai', body(500)));
    expect(first.reservedTokens).toBe(estimate);
    const refused = denial(await decide(plaintextKey, 'openai', body(500)));
    expect(refused).toMatchObject({ status: 429, code: 'pool_exhausted' });
    // The first request used 150 tokens: the rest of its reservation comes back at once.
    runtime.engine.reconcileTokens(first, 150);
    const second = ticketOf(await decide(plaintextKey, 'openai', body(500)));
    expect(second.reservedTokens).toBe(estimate);
    // 150 + estimate in the window: a third of the same size does not fit.
    expect(denial(await decide(plaintextKey, 'openai', body(500))).code).toBe('pool_exhausted');
    // A body that names no cap reserves the default output (1024): more than the whole limit on its own.
    expect(denial(await decide(plaintextKey, 'openai', '{"model":"gpt-4o-mini"}')).code).toBe('pool_exhausted');
    // A minute later the window is empty again.
    clock.advance(60_000);
    expect(ticketOf(await decide(plaintextKey, 'openai', body(500))).reservedTokens).toBe(estimate);
  });

  it('the gateway is asked for the body only where tokens count, and recordUsage reconciles (an estimate only adds)', async () => {
    clock.advance(60_000);
    const { plaintextKey } = await runtime.repository.keys.create({ name: 'usage' }, 'test');
    await runtime.snapshots.reload();
    expect(runtime.engine.needsBody(view(plaintextKey, 'openai', null))).toBe(true);
    expect(runtime.engine.needsBody(view(plaintextKey, 'anthropic', null))).toBe(false);
    // An unknown key is refused on its headers: no body buffered for it.
    expect(runtime.engine.needsBody(view('kp_not-a-key-0123456789', 'openai', null))).toBe(false);

    const first = ticketOf(await decide(plaintextKey, 'openai', body(500)));
    expect(denial(await decide(plaintextKey, 'openai', body(500))).code).toBe('pool_exhausted');
    const usage = { inputTokens: 0, outputTokens: 10, cachedInputTokens: 0, cacheCreationInputTokens: 0 };
    // Estimated from streamed text (no input counted): the reservation stays.
    runtime.engine.recordUsage(first, { ...usage, estimated: true });
    expect(denial(await decide(plaintextKey, 'openai', body(500))).code).toBe('pool_exhausted');
    // Reported: 100 in + 50 out; the rest of the reservation comes back.
    runtime.engine.recordUsage(first, { ...usage, inputTokens: 100, outputTokens: 50, estimated: false });
    expect(ticketOf(await decide(plaintextKey, 'openai', body(500))).reservedTokens).toBeGreaterThan(500);
  });

  it('a pool without tpm_limit and a key without token quotas reserve nothing (no token accounting)', async () => {
    const { plaintextKey } = await runtime.repository.keys.create({ name: 'untouched' }, 'test');
    await runtime.snapshots.reload();
    const ticket = ticketOf(await decide(plaintextKey, 'anthropic', body(100_000)));
    expect(ticket.reservedTokens).toBeUndefined();
    expect(ticket.tokenQuotas).toBeUndefined();
  });

  it('a reservation nothing will use goes back: a provider error answer, a request never forwarded (abandon); a GET reserves none', async () => {
    clock.advance(60_000);
    const { plaintextKey } = await runtime.repository.keys.create({ name: 'give-back' }, 'test');
    await runtime.snapshots.reload();
    const fits = async (): Promise<Ticket> => ticketOf(await decide(plaintextKey, 'openai', body(500)));
    const full = async (): Promise<void> => expect(denial(await decide(plaintextKey, 'openai', body(500))).code).toBe('pool_exhausted');

    // The provider refused the request (429, 400, 5xx): it bills nothing and no usage will arrive.
    const refused = await fits();
    await full();
    await runtime.engine.observe(refused, 429, { 'retry-after': '0' }, { release: true });
    const failed = await fits();
    await runtime.engine.observe(failed, 500, {}, { release: true });
    // The gateway's own reply keeps the estimate (the provider may have started billed work).
    const timedOut = await fits();
    await runtime.engine.observe(timedOut, 504, {}, { release: true, origin: 'gateway' });
    await full();

    clock.advance(60_000);
    // The gateway gave up while keypool decided, or the answer could not be built: never forwarded.
    runtime.engine.abandon(await fits());
    const kept = await fits();
    // A plain release (the response ended without reported usage) keeps the estimate.
    runtime.engine.release(kept);
    await full();

    // A GET reports no usage, so it reserves nothing (it would never be reconciled) and fits a full window.
    const get = ticketOf(await runtime.engine.decide({ ...view(plaintextKey, 'openai', null), headers: { authorization: `Bearer ${plaintextKey}`, ':method': 'GET', ':path': '/v1/models' } }));
    expect(get.reservedTokens).toBeUndefined();
    runtime.engine.release(get);
  });

  it('key tpm and tenant tpd quotas: 429 quota_exceeded names the token limit; reconcile frees the quota too', async () => {
    clock.advance(60_000);
    await runtime.repository.tenants.create({ id: 'acme', name: 'ACME', tpdLimit: 1500 }, 'test');
    const { plaintextKey, row } = await runtime.repository.keys.create({ name: 'tokens', tenantId: 'acme', tpmLimit: 800 }, 'test');
    await runtime.snapshots.reload();
    // A token quota anywhere: every pool's bodies are needed (the key is known only after the body would be read).
    expect(needsBodyForTokens(runtime.snapshots.current()!, 'anthropic')).toBe(true);

    const first = ticketOf(await decide(plaintextKey, 'anthropic', body(500)));
    expect(first.tokenQuotas).toEqual([
      { scope: 'key', id: row.id },
      { scope: 'tenant', id: 'acme' },
    ]);
    const minute = denial(await decide(plaintextKey, 'anthropic', body(500)));
    expect(minute).toMatchObject({ status: 429, code: 'quota_exceeded' });
    expect(minute.message).toMatch(/API key's tokens-per-minute quota is used up/);
    runtime.engine.reconcileTokens(first, 100);
    const second = ticketOf(await decide(plaintextKey, 'anthropic', body(500)));
    // The tenant's day (1500): 100 + estimate so far; a minute later one more fits (~1150), the next does not.
    clock.advance(60_000);
    ticketOf(await decide(plaintextKey, 'anthropic', body(500)));
    clock.advance(60_000);
    const day = denial(await decide(plaintextKey, 'anthropic', body(500)));
    expect(day.code).toBe('quota_exceeded');
    expect(day.message).toMatch(/tenant has used up its tokens-per-day quota/);
    runtime.engine.reconcileTokens(second, 0);
    expect(ticketOf(await decide(plaintextKey, 'anthropic', body(500))).reservedTokens).toBeGreaterThan(500);
  });
});
