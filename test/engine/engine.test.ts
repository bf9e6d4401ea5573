// The engine through the real runtime (in-memory PGlite, compiled snapshot, memory rate state, write buffer):
// what a request gets, and what a response does to the next requests and to the database.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { createLogger } from '../../src/log.js';
import type { Allow, Deny, HeaderBag, RequestView } from '../../src/core/types.js';
import type { Clock, RequestOutcome } from '../../src/ports.js';

const START_MS = Date.UTC(2026, 10, 22, 12, 0, 0);
const clock: Clock & { advance(ms: number): void; set(ms: number): void } = (() => {
  let nowMs = START_MS;
  return { nowMs: () => nowMs, advance: (ms: number) => void (nowMs += ms), set: (ms: number) => void (nowMs = ms) };
})();

let runtime: Runtime;
let validKey: string;
let allowlistedKey: string;
let revokedKey: string;
let expiredKey: string;
const accountIdByName = new Map<string, string>();

function view(key: string | null, overrides: Partial<RequestView> = {}): RequestView {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  return { headers, clientAddress: '192.0.2.10:40000', provider: 'openai', ...overrides };
}

async function decide(v: RequestView): Promise<RequestOutcome> {
  return runtime.engine.decide(v);
}

function asAllow(outcome: RequestOutcome): Allow {
  expect(outcome.decision.kind).toBe('allow');
  return outcome.decision as Allow;
}

function asDeny(outcome: RequestOutcome): Deny {
  expect(outcome.decision.kind).toBe('deny');
  return outcome.decision as Deny;
}

/** Serves one request to completion with the given upstream answer; returns the account that served it. */
async function serve(status: number, headers: HeaderBag = {}): Promise<string> {
  const outcome = await decide(view(validKey));
  const allow = asAllow(outcome);
  runtime.engine.observe(outcome.ticket!, status, headers);
  runtime.engine.release(outcome.ticket!);
  return allow.accountName;
}

beforeAll(async () => {
  runtime = await openRuntime({
    config: { databaseUrl: 'memory://', demoSeed: false, flushIntervalMs: 60_000, reloadIntervalMs: 600_000 },
    logger: createLogger('silent'),
    clock,
  });
  const repo = runtime.repository;
  for (const name of ['openai-a', 'openai-b']) {
    const row = await repo.accounts.create({ providerSlug: 'openai', name, apiKey: `sk-test-${name}-0123456789` }, 'test');
    accountIdByName.set(name, row.id);
  }
  validKey = (await repo.keys.create({ name: 'valid', tenantId: 'team-a', allowedIps: [] }, 'test')).plaintextKey;
  allowlistedKey = (await repo.keys.create({ name: 'office', allowedIps: ['10.0.0.0/8'] }, 'test')).plaintextKey;
  const revoked = await repo.keys.create({ name: 'revoked', allowedIps: [] }, 'test');
  await repo.keys.revoke(revoked.row.id, 'test');
  revokedKey = revoked.plaintextKey;
  expiredKey = (await repo.keys.create({ name: 'expired', allowedIps: [], expiresAt: new Date(START_MS + 1_000) }, 'test'))
    .plaintextKey;
  await runtime.snapshots.reload();
}, 120_000);

afterAll(async () => {
  await runtime?.stop();
});

describe('engine decisions', () => {
  it('allows a valid key: removes the client credential, injects the pooled key, priority and tenant', async () => {
    const outcome = await decide(view(validKey));
    const allow = asAllow(outcome);
    expect(allow.removeHeaders).toContain('authorization');
    const injected = Object.fromEntries(allow.setHeaders);
    expect(injected.authorization).toMatch(/^Bearer sk-test-openai-[ab]-0123456789$/);
    expect(injected['x-keypool-priority']).toBe('7');
    expect(injected['x-keypool-tenant']).toBe('team-a');
    expect(outcome.ticket).toMatchObject({ pool: 'openai', accountName: allow.accountName });
    runtime.engine.release(outcome.ticket!);
  });

  it.each([
    ['no key', () => view(null), 401, 'missing_api_key'],
    ['unknown key', () => view(`kp_${'x'.repeat(40)}`), 401, 'invalid_api_key'],
    ['revoked key', () => view(revokedKey), 401, 'key_revoked'],
    ['address outside the allowlist', () => view(allowlistedKey), 403, 'ip_not_allowed'],
    ['no address while the key has an allowlist', () => view(allowlistedKey, { clientAddress: null }), 403, 'ip_not_allowed'],
    ['provider without a pool', () => view(validKey, { provider: 'gemini' }), 503, 'no_healthy_account'],
    ['provider keypool does not know', () => view(validKey, { provider: 'nope' }), 503, 'unknown_provider'],
  ])('denies %s', async (_name, request, status, code) => {
    const deny = asDeny(await decide(request()));
    expect({ status: deny.status, code: deny.code }).toEqual({ status, code });
    // Gemini routes answer in Google's error shape (core/errors.ts), the others in OpenAI's.
    const body = JSON.parse(deny.body) as { error: { code: unknown; details?: Array<{ reason: string }> } };
    if (request().provider === 'gemini') expect(body.error).toMatchObject({ code: status, details: [{ reason: code.toUpperCase() }] });
    else expect(body).toMatchObject({ error: { code } });
  });

  it('answers in the provider shape of the route: Anthropic routes get Anthropic errors', async () => {
    const denial = asDeny(await decide(view(`kp_${'x'.repeat(40)}`, { provider: 'anthropic' })));
    expect(JSON.parse(denial.body)).toEqual({ type: 'error', error: { type: 'authentication_error', message: 'Invalid API key.', code: 'invalid_api_key' } });
  });

  it('accepts an allowlisted key from inside its range, IPv4-mapped IPv6 included', async () => {
    for (const address of ['10.1.2.3:5000', '[::ffff:10.9.9.9]:443']) {
      const outcome = await decide(view(allowlistedKey, { clientAddress: address }));
      asAllow(outcome);
      runtime.engine.release(outcome.ticket!);
    }
  });

  it('denies an expired key once its expiry has passed', async () => {
    const before = await decide(view(expiredKey));
    asAllow(before);
    runtime.engine.release(before.ticket!);
    clock.advance(1_000);
    const deny = asDeny(await decide(view(expiredKey)));
    expect(deny.code).toBe('key_expired');
  });
});

describe('engine observations', () => {
  it('cools an account down on 429 and sends traffic to the other one until the window ends', async () => {
    clock.set(START_MS + 10_000);
    const limited = await serve(429, { 'retry-after': '7' });
    const during = new Set<string>();
    for (let i = 0; i < 6; i += 1) during.add(await serve(200));
    expect(during).toEqual(new Set([limited === 'openai-a' ? 'openai-b' : 'openai-a']));

    clock.advance(7_001);
    const after = new Set<string>();
    for (let i = 0; i < 6; i += 1) after.add(await serve(200));
    expect(after).toEqual(new Set(['openai-a', 'openai-b']));
  });

  it('answers 429 pool_exhausted with retry-after when every account cools down', async () => {
    clock.set(START_MS + 60_000);
    const first = await serve(429, { 'retry-after': '20' });
    const second = await serve(429, { 'retry-after': '30' });
    expect(new Set([first, second]).size).toBe(2);
    const deny = asDeny(await decide(view(validKey)));
    expect(deny).toMatchObject({ status: 429, code: 'pool_exhausted' });
    expect(Object.fromEntries(deny.headers)['retry-after']).toBe('20');
    clock.advance(30_001);
  });

  it('invalidates an account on 401, persists it and audits it; other denials reach the audit log', async () => {
    clock.set(START_MS + 200_000);
    // Round-robin alternates: serve until one account answers 401 and the other 200.
    const invalidated: string | null = await serve(401);
    for (let i = 0; i < 4; i += 1) expect(await serve(200)).not.toBe(invalidated);
    asDeny(await decide(view(allowlistedKey, { clientAddress: '192.0.2.77:1' })));
    // Whatever the gateway passed on is stored canonical or not at all (a NUL byte would poison the audit batch).
    asDeny(await decide(view(allowlistedKey, { clientAddress: '192.0.2.78\u0000' })));

    await runtime.writes.flush();
    const account = await runtime.repository.accounts.get(accountIdByName.get(invalidated)!);
    expect(account.status).toBe('invalid');
    const audit = await runtime.repository.audit.list({ limit: 100 });
    const actions = audit.rows.map((row) => row.action);
    expect(actions).toContain('account_invalidated');
    expect(actions).toContain('denied_ip');
    expect(actions).toContain('denied_revoked');
    const deniedIp = audit.rows.filter((row) => row.action === 'denied_ip').map((row) => row.clientIp);
    expect(deniedIp).toContain('192.0.2.77');
    expect(deniedIp).toContain(null);

    // The change feed reloads the snapshot without the invalid account: the pool keeps serving from the other.
    await runtime.snapshots.reload();
    const pool = runtime.snapshots.current()!.pools.get('openai')!;
    expect(pool.accounts.map((a) => a.name)).not.toContain(invalidated);
  });

  it('counts usage per account per minute bucket in account_usage_stats', async () => {
    await runtime.writes.flush();
    const rows = await runtime.repository.usage.query({ from: new Date(START_MS - 60_000), to: new Date(START_MS + 3_600_000) });
    const total = rows.reduce(
      (sum, row) => ({ requests: sum.requests + row.requests, rateLimited: sum.rateLimited + row.rateLimited }),
      { requests: 0, rateLimited: 0 },
    );
    // 1 + 6 + 6 (cooldown test) + 2 (exhausted test) + 5 (invalidation test) responses were observed.
    expect(total).toEqual({ requests: 20, rateLimited: 3 });
  });

  it('enabling an account again (any path: here the repository, as the CLI does) forgets its learned limits and cooldown', async () => {
    await runtime.writes.flush();
    const parked = await serve(200, { 'x-ratelimit-limit-requests': '10000', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '23h59m0s' });
    const deny = asDeny(await decide(view(validKey)));
    expect(deny).toMatchObject({ status: 429, code: 'pool_exhausted' });
    expect(Number(Object.fromEntries(deny.headers)['retry-after'])).toBe(86_340);
    const id = accountIdByName.get(parked)!;
    await runtime.repository.accounts.setStatus(id, 'disabled', 'test', 'test');
    await runtime.snapshots.reload();
    await runtime.repository.accounts.setStatus(id, 'active', null, 'test');
    await runtime.snapshots.reload();
    await new Promise((resolve) => setImmediate(resolve));
    expect(asAllow(await decide(view(validKey))).accountName).toBe(parked);
  });
});

describe('models and quota scopes', () => {
  const enc = (text: string) => ({ bytes: new TextEncoder().encode(text), truncated: false });
  const chatView = (model: string, provider = 'openrouter'): RequestView =>
    view(validKey, { provider, headers: { authorization: `Bearer ${validKey}`, ':path': '/api/v1/chat/completions' }, body: enc(JSON.stringify({ model })) });
  const ids = new Map<string, string>();

  beforeAll(async () => {
    clock.set(START_MS + 400_000);
    const repo = runtime.repository;
    for (const [name, models, scope] of [
      ['or-a', ['gpt-4o*'], 'openrouter-acme'],
      ['or-b', ['gpt-4o*', 'o1'], 'openrouter-acme'],
      ['or-c', ['claude-*'], null],
    ] as const) {
      const row = await repo.accounts.create({ providerSlug: 'openrouter', name, apiKey: `sk-or-${name}-0123456789`, models: [...models], scope }, 'test');
      ids.set(name, row.id);
    }
    const gemini = await repo.accounts.create({ providerSlug: 'gemini', name: 'gem-a', apiKey: 'AIza-gem-a-0123456789', models: ['gemini-1.5*'] }, 'test');
    ids.set('gem-a', gemini.id);
    await runtime.snapshots.reload();
  });

  it('the snapshot compiles models and scope; only pools with a restriction need the model', () => {
    const snapshot = runtime.snapshots.current()!;
    expect(snapshot.pools.get('openrouter')?.needsModel).toBe(true);
    expect(snapshot.pools.get('openai')?.needsModel).toBe(false);
    const orA = snapshot.pools.get('openrouter')!.accounts.find((a) => a.name === 'or-a')!;
    expect(orA.scope).toBe('openrouter-acme');
    expect(orA.servesModel('gpt-4o-mini')).toBe(true);
    expect(orA.servesModel('o1')).toBe(false);
    // The body is needed only where the path does not name the model.
    expect(runtime.engine.needsBody(chatView('x'))).toBe(true);
    // A caller who may not use the pool is refused on its headers: no body is asked for.
    expect(runtime.engine.needsBody({ ...chatView('x'), headers: { ':path': '/api/v1/chat/completions' } })).toBe(false);
    expect(runtime.engine.needsBody({ ...chatView('x'), headers: { ':path': '/v1/chat/completions', authorization: 'Bearer kp_unknown' } })).toBe(false);
    expect(runtime.engine.needsBody({ ...chatView('x'), headers: { ':path': '/v1/chat/completions', authorization: `Bearer ${revokedKey}` } })).toBe(false);
    expect(runtime.engine.needsBody(view(validKey))).toBe(false);
    expect(runtime.engine.needsBody(view(validKey, { provider: 'gemini', headers: { ':path': '/v1beta/models/gemini-1.5-pro:generateContent' } }))).toBe(false);
  });

  it('picks only accounts that serve the model; the ticket and the allow carry it', async () => {
    const served = new Set<string>();
    for (let i = 0; i < 4; i += 1) {
      const outcome = await decide(chatView('o1'));
      served.add(asAllow(outcome).accountName);
      expect(outcome.ticket?.model).toBe('o1');
      runtime.engine.release(outcome.ticket!);
    }
    expect([...served]).toEqual(['or-b']);
    const claude = await decide(chatView('claude-3-opus'));
    expect(asAllow(claude).accountName).toBe('or-c');
    runtime.engine.release(claude.ticket!);
  });

  it('a model nobody serves: 400 model_not_available; an unreadable body: 400 invalid_request (provider shape)', async () => {
    expect(asDeny(await decide(chatView('mistral-large')))).toMatchObject({ status: 400, code: 'model_not_available' });
    const noBody = asDeny(await decide({ ...chatView('x'), body: undefined }));
    expect(noBody).toMatchObject({ status: 400, code: 'invalid_request' });
    const gemini = asDeny(await decide(view(validKey, { provider: 'gemini', headers: { authorization: `Bearer ${validKey}`, ':path': '/v1beta/models/gemini-2.0-flash:generateContent' } })));
    expect(JSON.parse(gemini.body)).toMatchObject({ error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ reason: 'MODEL_NOT_AVAILABLE' }] } });
    const allowed = await decide(view(validKey, { provider: 'gemini', headers: { authorization: `Bearer ${validKey}`, ':path': '/v1beta/models/gemini-1.5-pro:generateContent' } }));
    expect(asAllow(allowed).accountName).toBe('gem-a');
    runtime.engine.release(allowed.ticket!);
  });

  it('a 404 model_not_found takes the model off that account on this replica; the credential stays valid', async () => {
    const outcome = await decide(chatView('o1'));
    const body = new TextEncoder().encode('{"error":{"code":"model_not_found","message":"The model `o1` does not exist"}}');
    await runtime.engine.observe(outcome.ticket!, 404, {}, { release: true, body });
    expect(asDeny(await decide(chatView('o1')))).toMatchObject({ code: 'model_not_available' });
    // Other models of the account are still served by it.
    const other = await decide(chatView('gpt-4o'));
    expect(['or-a', 'or-b']).toContain(asAllow(other).accountName);
    runtime.engine.release(other.ticket!);
    await runtime.writes.flush();
    expect((await runtime.repository.accounts.get(ids.get('or-b')!)).status).toBe('active');
  });

  it('insufficient_quota disables the account and its scope siblings, durably and audited; the other scope is untouched', async () => {
    const outcome = await decide(chatView('gpt-4o'));
    const body = new TextEncoder().encode('{"error":{"type":"insufficient_quota","code":"insufficient_quota","message":"You exceeded your current quota"}}');
    const committed = runtime.engine.observe(outcome.ticket!, 429, {}, { release: true, body });
    expect(committed).not.toBeNull();
    await committed;
    // Held out at once (rate state), before any reload: no sibling of the scope is admitted.
    expect(asDeny(await decide(chatView('gpt-4o'))).status).toBe(503);
    await runtime.writes.flush();
    for (const name of ['or-a', 'or-b']) {
      const row = await runtime.repository.accounts.get(ids.get(name)!);
      expect(row.status, name).toBe('disabled');
      expect(row.disabledReason).toContain('quota_exhausted');
    }
    expect((await runtime.repository.accounts.get(ids.get('or-c')!)).status).toBe('active');
    const audit = await runtime.repository.audit.list({ limit: 200 });
    const disabled = audit.rows.filter((row) => row.action === 'account_disabled').map((row) => (row.metadata as { accountId?: string }).accountId);
    expect(disabled).toEqual(expect.arrayContaining([ids.get('or-a'), ids.get('or-b')]));
    const claude = await decide(chatView('claude-3-haiku'));
    expect(asAllow(claude).accountName).toBe('or-c');
    runtime.engine.release(claude.ticket!);
  });

  it('per_model_state: a pool without restrictions reads the model for its state; a body without one is still served', async () => {
    const repo = runtime.repository;
    await repo.accounts.create({ providerSlug: 'anthropic', name: 'ant-a', apiKey: 'sk-ant-a-0123456789' }, 'test');
    await runtime.snapshots.reload();
    const messages = (body: string): RequestView =>
      view(validKey, { provider: 'anthropic', headers: { authorization: `Bearer ${validKey}`, ':path': '/v1/messages' }, body: enc(body) });
    expect(runtime.snapshots.current()!.pools.get('anthropic')?.needsModel).toBe(false);
    expect(runtime.engine.needsBody(messages('{}'))).toBe(false);

    await repo.providers.update('anthropic', { perModelState: true }, 'test');
    await runtime.snapshots.reload();
    expect(runtime.snapshots.current()!.pools.get('anthropic')?.needsModel).toBe(true);
    expect(runtime.engine.needsBody(messages('{}'))).toBe(true);
    // [body, the ticket's model]: nothing is refused, since every account serves every model.
    for (const [body, model] of [
      [JSON.stringify({ model: 'claude-3-haiku', max_tokens: 8 }), 'claude-3-haiku'],
      ['--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--b--', null],
      ['{"messages":[]}', null],
      [JSON.stringify({ model: 'x y' }), null],
    ] as const) {
      const outcome = await decide(messages(body));
      expect(asAllow(outcome).accountName, body).toBe('ant-a');
      expect(outcome.ticket?.model, body).toBe(model);
      runtime.engine.release(outcome.ticket!);
    }
    const cut = await decide({ ...messages('{"model":"claude-3-haiku","pad":"'), body: { bytes: new Uint8Array(16), truncated: true } });
    expect(asAllow(cut).accountName).toBe('ant-a');
    runtime.engine.release(cut.ticket!);
    await repo.providers.update('anthropic', { perModelState: false }, 'test');
  });
});
