// Quotas per key and per tenant and priority reserves through the real engine (in-memory PGlite, compiled snapshot,
// memory rate state): what a client gets (429 quota_exceeded / priority_shed with retry-after), what is counted, and
// what the engine reports per tenant and priority.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { createLogger } from '../../src/log.js';
import { zonedDayBounds } from '../../src/core/quota.js';
import type { Deny, HeaderBag, RequestView } from '../../src/core/types.js';
import type { Clock, RequestOutcome } from '../../src/ports.js';

// 12:00Z = 07:00 in New York (EST): that quota day ends at 2026-11-23T05:00Z, 17 h later.
const START_MS = Date.UTC(2026, 10, 22, 12, 0, 0);
const NY_DAY_END_MS = Date.UTC(2026, 10, 23, 5, 0, 0);
const clock: Clock & { advance(ms: number): void; set(ms: number): void } = (() => {
  let nowMs = START_MS;
  return { nowMs: () => nowMs, advance: (ms: number) => void (nowMs += ms), set: (ms: number) => void (nowMs = ms) };
})();

let runtime: Runtime;
const admissions: Array<[tenant: string | null, priority: number, outcome: string]> = [];

function view(key: string): RequestView {
  return { headers: { authorization: `Bearer ${key}` }, clientAddress: '192.0.2.10:40000', provider: 'openai' };
}

async function attempt(key: string, upstream: { status: number; headers?: HeaderBag } = { status: 200 }): Promise<RequestOutcome> {
  const outcome = await runtime.engine.decide(view(key));
  if (outcome.ticket !== null) {
    await runtime.engine.observe(outcome.ticket, upstream.status, upstream.headers ?? {});
    runtime.engine.release(outcome.ticket);
  }
  return outcome;
}

function denial(outcome: RequestOutcome): Deny {
  expect(outcome.decision.kind).toBe('deny');
  return outcome.decision as Deny;
}

const retryAfter = (deny: Deny): number => Number(Object.fromEntries(deny.headers)['retry-after']);

beforeAll(async () => {
  runtime = await openRuntime({
    config: { databaseUrl: 'memory://', demoSeed: false, flushIntervalMs: 60_000, reloadIntervalMs: 600_000, quotaTimeZone: 'America/New_York' },
    logger: createLogger('silent'),
    clock,
    onAdmission: (tenant, priority, outcome) => admissions.push([tenant, priority, outcome]),
  });
  await runtime.repository.accounts.create({ providerSlug: 'openai', name: 'only', apiKey: 'sk-test-only-0123456789' }, 'test');
}, 120_000);

afterAll(async () => {
  await runtime?.stop();
});

describe('quotas through the engine', () => {
  it('a key with rpm 2: two requests a minute, then 429 quota_exceeded naming the key minute, until the window frees', async () => {
    const { plaintextKey } = await runtime.repository.keys.create({ name: 'rpm2', rpmLimit: 2 }, 'test');
    await runtime.snapshots.reload();
    expect((await attempt(plaintextKey)).decision.kind).toBe('allow');
    clock.advance(10_000);
    expect((await attempt(plaintextKey)).decision.kind).toBe('allow');
    clock.advance(10_000);
    const refused = denial(await attempt(plaintextKey));
    expect(refused).toMatchObject({ status: 429, code: 'quota_exceeded' });
    expect(refused.message).toMatch(/API key's requests-per-minute quota/);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { type: 'rate_limit_error', code: 'quota_exceeded' } });
    // The first admission leaves the window 40 s from now.
    expect(retryAfter(refused)).toBe(40);
    clock.advance(40_000);
    expect((await attempt(plaintextKey)).decision.kind).toBe('allow');
  });

  it('a tenant with rpd 3 shared by two keys: three a day in the quota zone, then quota_exceeded until its midnight', async () => {
    clock.set(START_MS);
    await runtime.repository.tenants.create({ id: 'acme', name: 'ACME', rpmLimit: null, rpdLimit: 3 }, 'test');
    const one = (await runtime.repository.keys.create({ name: 'acme-1', tenantId: 'acme' }, 'test')).plaintextKey;
    const two = (await runtime.repository.keys.create({ name: 'acme-2', tenantId: 'acme' }, 'test')).plaintextKey;
    await runtime.snapshots.reload();
    admissions.length = 0;
    for (const key of [one, two, one]) expect((await attempt(key)).decision.kind).toBe('allow');
    const refused = denial(await attempt(two));
    expect(refused.code).toBe('quota_exceeded');
    expect(refused.message).toMatch(/tenant has used up its requests-per-day quota/);
    expect(retryAfter(refused)).toBe((NY_DAY_END_MS - START_MS) / 1000);
    // The refusal counted nowhere: still refused, and usage says 3.
    const usage = await runtime.state.inspectQuota!({ scope: 'tenant', id: 'acme', rpmLimit: null, rpdLimit: 3 }, clock.nowMs(), zonedDayBounds(clock.nowMs(), 'America/New_York'));
    expect(usage).toMatchObject({ day: 3, dayEndMs: NY_DAY_END_MS });
    clock.set(NY_DAY_END_MS - 1);
    expect(denial(await attempt(one)).code).toBe('quota_exceeded');
    clock.set(NY_DAY_END_MS);
    expect((await attempt(one)).decision.kind).toBe('allow');
    expect(admissions.map(([tenant, , outcome]) => [tenant, outcome])).toEqual([
      ['acme', 'allow'],
      ['acme', 'allow'],
      ['acme', 'allow'],
      ['acme', 'quota_exceeded'],
      ['acme', 'quota_exceeded'],
      ['acme', 'allow'],
    ]);
  });

  it('a provider reporting low remaining capacity: P7 is shed with retry-after at its reset, P0 admitted; both once it recovers', async () => {
    clock.set(START_MS + 2 * 86_400_000);
    const repo = runtime.repository;
    await repo.settings.set('priority.enabled', true, 'test');
    await repo.mappings.create({ pattern: 'kp_prod_', matchType: 'prefix', priority: 0 }, 'test');
    const prod = (await repo.keys.create({ name: 'prod', prefix: 'prod' }, 'test')).plaintextKey;
    const batch = (await repo.keys.create({ name: 'batch', prefix: 'batch' }, 'test')).plaintextKey;
    await runtime.snapshots.reload();
    const low = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '5', 'x-ratelimit-reset-requests': '30s' };
    expect((await attempt(prod, { status: 200, headers: low })).decision.kind).toBe('allow');
    admissions.length = 0;
    const shed = denial(await attempt(batch));
    expect(shed).toMatchObject({ status: 429, code: 'priority_shed' });
    expect(retryAfter(shed)).toBe(30);
    expect((await attempt(prod)).decision.kind).toBe('allow');
    expect(admissions).toEqual([
      [null, 7, 'priority_shed'],
      [null, 0, 'allow'],
    ]);
    const recovered = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '95', 'x-ratelimit-reset-requests': '1s' };
    expect((await attempt(prod, { status: 200, headers: recovered })).decision.kind).toBe('allow');
    expect((await attempt(batch)).decision.kind).toBe('allow');
    expect((await attempt(prod)).decision.kind).toBe('allow');
  });

  it('with priority matching off, no request is shed (reserves apply only while priority.enabled)', async () => {
    await runtime.repository.settings.set('priority.enabled', false, 'test');
    const key = (await runtime.repository.keys.create({ name: 'plain' }, 'test')).plaintextKey;
    await runtime.snapshots.reload();
    const low = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-reset-requests': '30s' };
    expect((await attempt(key, { status: 200, headers: low })).decision).toMatchObject({ kind: 'allow' });
    expect((await attempt(key)).decision).toMatchObject({ kind: 'allow' });
  });
});
