// Every admin route over HTTP against a real (PGlite) store: happy paths, auth, bad JSON, unknown ids, validation
// errors and conflicts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, TOKEN_NAME, UPSTREAM_KEYS, type Harness } from './harness.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

function expectError(response: { status: number; json: any }, status: number, code?: string, field?: string | null): void {
  expect(response.status, JSON.stringify(response.json)).toBe(status);
  expect(response.json).toHaveProperty('error');
  expect(typeof response.json.error.message).toBe('string');
  expect(response.json.error).toHaveProperty('field');
  if (code !== undefined) expect(response.json.error.code).toBe(code);
  if (field !== undefined) expect(response.json.error.field).toBe(field);
}

async function createAccount(name: string, apiKey = UPSTREAM_KEYS.good, slug = 'openai'): Promise<any> {
  const response = await h.api('POST', `/admin/providers/${slug}/accounts`, { body: { name, api_key: apiKey } });
  expect(response.status, response.text).toBe(201);
  return response.json.account;
}

async function createKey(name: string, extra: Record<string, unknown> = {}): Promise<{ id: string; apiKey: string; key: any }> {
  const response = await h.api('POST', '/admin/keys', { body: { name, ...extra } });
  expect(response.status, response.text).toBe(201);
  return { id: response.json.key.id, apiKey: response.json.api_key, key: response.json.key };
}

async function auditActions(filter = ''): Promise<any[]> {
  const response = await h.api('GET', `/admin/audit${filter}`);
  expect(response.status).toBe(200);
  return response.json.items;
}

describe('plumbing', () => {
  it('serves /healthz and /readyz without a token', async () => {
    const health = await h.api('GET', '/healthz', { token: null });
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: 'ok' });
    const ready = await h.api('GET', '/readyz', { token: null });
    expect(ready.status).toBe(200);
    expect(ready.json.status).toBe('ready');
    expect(ready.json.snapshot_version).toBeGreaterThan(0);
  });

  it('serves /metrics without a token on loopback', async () => {
    const metrics = await h.api('GET', '/metrics', { token: null });
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metrics.text).toContain('keypool_decisions_total');
  });

  it('refuses admin routes without a token, with a wrong token and with a malformed header', async () => {
    const missing = await h.api('GET', '/admin/keys', { token: null });
    expectError(missing, 401, 'missing_token', null);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expectError(await h.api('GET', '/admin/keys', { token: 'wrong' }), 401, 'invalid_token');
    expectError(await h.api('GET', '/admin/keys', { token: null, headers: { authorization: 'Basic abc' } }), 401, 'invalid_token');
    expectError(await h.api('GET', '/admin/keys', { token: null, headers: { authorization: 'Bearer' } }), 401, 'invalid_token');
    expectError(await h.api('POST', '/admin/keys', { token: 'wrong', body: { name: 'x' } }), 401);
  });

  it('echoes a well-formed x-request-id and generates one otherwise', async () => {
    const echoed = await h.api('GET', '/healthz', { headers: { 'x-request-id': 'req-123.abc' } });
    expect(echoed.headers.get('x-request-id')).toBe('req-123.abc');
    const generated = await h.api('GET', '/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const error = await h.api('GET', '/admin/keys', { token: null, headers: { 'x-request-id': 'trace-1' } });
    expect(error.headers.get('x-request-id')).toBe('trace-1');
  });

  it('answers 404 for unknown routes and 405 for a wrong method', async () => {
    expectError(await h.api('GET', '/admin/nothing'), 404, 'route_not_found');
    const wrongMethod = await h.api('PUT', '/admin/keys');
    expectError(wrongMethod, 405, 'method_not_allowed');
    expect(wrongMethod.headers.get('allow')).toContain('GET');
  });

  it('answers 400 for bad JSON without echoing the body', async () => {
    const response = await h.api('POST', '/admin/keys', { rawBody: '{"name": "sk-secret-in-broken-json' });
    expectError(response, 400, 'invalid_json', 'body');
    expect(response.text).not.toContain('sk-secret-in-broken-json');
  });

  it('answers 415 for a non-JSON body and 413 past the body limit', async () => {
    expectError(await h.api('POST', '/admin/keys', { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    const huge = JSON.stringify({ name: 'x'.repeat(70 * 1024) });
    expectError(await h.api('POST', '/admin/keys', { rawBody: huge }), 413, 'body_too_large');
  });

  it('answers 400 for a malformed UUID in a path without echoing it', async () => {
    const response = await h.api('GET', '/admin/keys/kp_notauuidbutmaybeakey1234567890');
    expectError(response, 400, 'invalid_uuid', 'id');
    expect(response.text).not.toContain('kp_notauuid');
  });

  it('answers 400 for unknown or repeated query parameters', async () => {
    expectError(await h.api('GET', '/admin/keys?dew=true'), 400, 'unknown_parameter', 'dew');
    expectError(await h.api('GET', '/admin/keys?due=maybe'), 400, 'invalid_parameter', 'due');
    expectError(await h.api('GET', '/admin/audit?limit=1&limit=2'), 400, 'invalid_parameter', 'limit');
  });
});

describe('providers', () => {
  it('lists the seeded providers with account counts', async () => {
    const response = await h.api('GET', '/admin/providers');
    expect(response.status).toBe(200);
    const slugs = response.json.items.map((p: any) => p.slug);
    expect(slugs).toEqual(expect.arrayContaining(['openai', 'anthropic', 'azure-openai', 'gemini', 'openrouter', 'openai-compatible']));
    expect(response.json.items[0].accounts).toHaveProperty('total');
  });

  it('gets one provider, 404 for an unknown slug, 400 for a malformed one', async () => {
    const response = await h.api('GET', '/admin/providers/anthropic');
    expect(response.status).toBe(200);
    expect(response.json.provider).toMatchObject({ slug: 'anthropic', auth_style: 'x-api-key', rate_limit_dialect: 'anthropic' });
    expectError(await h.api('GET', '/admin/providers/nope'), 404, 'not_found');
    expectError(await h.api('GET', '/admin/providers/NOT_A_SLUG'), 400, 'invalid_slug', 'slug');
  });
});

describe('providers: strategy', () => {
  it('PATCH changes the default strategy (audited as config_set); bad bodies are 422, unknown slugs 404', async () => {
    const patched = await h.api('PATCH', '/admin/providers/gemini', { body: { strategy: 'least-loaded' } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.provider).toMatchObject({ slug: 'gemini', default_strategy: 'least-loaded' });
    expect((await h.api('GET', '/admin/providers/gemini')).json.provider.default_strategy).toBe('least-loaded');
    const audit = await auditActions('?action=config_set');
    expect(audit[0].metadata).toEqual({ name: 'providers.gemini.strategy', value: 'least-loaded', previous: 'round-robin' });
    expectError(await h.api('PATCH', '/admin/providers/gemini', { body: { strategy: 'fastest' } }), 422, 'invalid_choice', 'strategy');
    expectError(await h.api('PATCH', '/admin/providers/gemini', { body: { auth_style: 'bearer' } }), 422, 'unknown_field');
    expectError(await h.api('PATCH', '/admin/providers/mistral', { body: { strategy: 'priority' } }), 404);
    await h.api('PATCH', '/admin/providers/gemini', { body: { strategy: 'round-robin' } });
  });

  it('PATCH switches per_model_state (one config_set row per changed setting); an unchanged value writes nothing', async () => {
    expect((await h.api('GET', '/admin/providers/openai')).json.provider.per_model_state).toBe(false);
    const patched = await h.api('PATCH', '/admin/providers/openai', { body: { per_model_state: true, strategy: 'round-robin' } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.provider).toMatchObject({ slug: 'openai', per_model_state: true, default_strategy: 'round-robin' });
    const audit = await auditActions('?action=config_set');
    expect(audit[0].metadata).toEqual({ name: 'providers.openai.per_model_state', value: true, previous: false });
    // strategy was already round-robin: no row for it
    expect(audit.filter((row) => String(row.metadata.name).startsWith('providers.openai.')).map((row) => row.metadata.name)).toEqual(['providers.openai.per_model_state']);
    const again = await h.api('PATCH', '/admin/providers/openai', { body: { per_model_state: true } });
    expect(again.status).toBe(200);
    expect((await auditActions('?action=config_set')).length).toBe(audit.length);
    expectError(await h.api('PATCH', '/admin/providers/openai', { body: { per_model_state: 'sometimes' } }), 422, 'invalid_type', 'per_model_state');
    expect((await h.api('PATCH', '/admin/providers/openai', { body: { per_model_state: false } })).json.provider.per_model_state).toBe(false);
  });
});

describe('accounts', () => {
  it('creates, lists, gets, patches and soft-deletes an account; the key is write-only', async () => {
    const account = await createAccount('acct-crud');
    expect(account).toMatchObject({ name: 'acct-crud', provider: 'openai', status: 'active', key_last4: UPSTREAM_KEYS.good.slice(-4) });
    expect(JSON.stringify(account)).not.toContain(UPSTREAM_KEYS.good);
    expect(account).not.toHaveProperty('api_key');

    const list = await h.api('GET', '/admin/providers/openai/accounts');
    expect(list.json.items.map((a: any) => a.id)).toContain(account.id);
    const filtered = await h.api('GET', '/admin/providers/openai/accounts?status=disabled');
    expect(filtered.json.items.map((a: any) => a.id)).not.toContain(account.id);

    const got = await h.api('GET', `/admin/providers/openai/accounts/${account.id}`);
    expect(got.json.account.id).toBe(account.id);

    const patched = await h.api('PATCH', `/admin/providers/openai/accounts/${account.id}`, {
      body: { weight: 5, rpm_limit: 60, api_key: 'sk-new-key-abcdefghij-WXYZ' },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.account).toMatchObject({ weight: 5, rpm_limit: 60, key_last4: 'WXYZ' });
    expect(patched.text).not.toContain('sk-new-key');

    const deleted = await h.api('DELETE', `/admin/providers/openai/accounts/${account.id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expectError(await h.api('GET', `/admin/providers/openai/accounts/${account.id}`), 404, 'not_found');
    const after = await h.api('GET', '/admin/providers/openai/accounts');
    expect(after.json.items.map((a: any) => a.id)).not.toContain(account.id);
    expectError(await h.api('DELETE', `/admin/providers/openai/accounts/${account.id}`), 404);

    const actions = (await auditActions()).filter((e) => e.metadata?.accountId === account.id).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['account_created', 'account_updated', 'account_deleted']));
    const entries = (await auditActions()).filter((e) => e.metadata?.accountId === account.id);
    for (const entry of entries) expect(entry.actor).toBe(TOKEN_NAME);
  });

  it('takes models (an array of names and prefix globs) and a scope, patches and clears them, and refuses bad ones', async () => {
    const created = await h.api('POST', '/admin/providers/openai/accounts', {
      body: { name: 'acct-models', api_key: UPSTREAM_KEYS.good, models: ['gpt-4o*', 'o1'], scope: 'openai-org-acme/project-x' },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json.account).toMatchObject({ models: ['gpt-4o*', 'o1'], scope: 'openai-org-acme/project-x' });
    const id = created.json.account.id;
    const patched = await h.api('PATCH', `/admin/providers/openai/accounts/${id}`, { body: { models: [], scope: null } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.account).toMatchObject({ models: [], scope: null });
    const bad = await h.api('PATCH', `/admin/providers/openai/accounts/${id}`, { body: { models: ['gpt-*-mini'], scope: ' x' } });
    expect(bad.status).toBe(422);
    expect(bad.json.error.details.map((d: any) => d.field).sort()).toEqual(['models', 'scope']);
    expectError(await h.api('PATCH', `/admin/providers/openai/accounts/${id}`, { body: { models: 42 } }), 422, 'invalid_type', 'models');
  });

  it('validates account bodies (422 with snake_case fields) and refuses a conflicting provider_slug', async () => {
    const missing = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'x' } });
    expectError(missing, 422, 'required', 'api_key');
    const bad = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'x', api_key: 'sk with space', rpm_limit: -1 } });
    expect(bad.status).toBe(422);
    expect(bad.json.error.details.map((d: any) => d.field).sort()).toEqual(['api_key', 'rpm_limit']);
    expect(bad.text).not.toContain('sk with space');
    expectError(await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'x', api_key: 'sk-abc', bogus: 1 } }), 422, 'unknown_field', 'bogus');
    expectError(
      await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'x', api_key: 'sk-abcdef', provider_slug: 'anthropic' } }),
      422,
      'conflicting_fields',
      'provider_slug',
    );
    expectError(await h.api('POST', '/admin/providers/openai/accounts', { body: [1, 2] }), 422, 'invalid_type');
    expectError(await h.api('PATCH', `/admin/providers/openai/accounts/${UNKNOWN_ID}`, { body: {} }), 422, 'empty_patch');
  });

  it('answers 409 for a duplicate name and 404 for unknown provider, unknown id or the wrong provider', async () => {
    const account = await createAccount('acct-dup');
    expectError(await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'acct-dup', api_key: 'sk-other-000000' } }), 409, 'conflict', 'name');
    expectError(await h.api('POST', '/admin/providers/nope/accounts', { body: { name: 'a', api_key: 'sk-abcdef' } }), 404);
    expectError(await h.api('GET', `/admin/providers/openai/accounts/${UNKNOWN_ID}`), 404, 'not_found');
    expectError(await h.api('GET', `/admin/providers/anthropic/accounts/${account.id}`), 404, 'not_found');
    expectError(await h.api('PATCH', `/admin/providers/openai/accounts/${UNKNOWN_ID}`, { body: { weight: 2 } }), 404);
    expectError(await h.api('POST', `/admin/providers/openai/accounts/${UNKNOWN_ID}/enable`), 404);
    expectError(await h.api('GET', `/admin/providers/openai/accounts/not-a-uuid/stats`), 400, 'invalid_uuid');
  });

  it('disables with a reason and enables again (clearing invalid)', async () => {
    const account = await createAccount('acct-toggle');
    const disabled = await h.api('POST', `/admin/providers/openai/accounts/${account.id}/disable`, { body: { reason: 'maintenance' } });
    expect(disabled.status).toBe(200);
    expect(disabled.json.account).toMatchObject({ status: 'disabled', disabled_reason: 'maintenance' });
    expectError(await h.api('POST', `/admin/providers/openai/accounts/${account.id}/disable`, { body: { why: 'x' } }), 422, 'unknown_field');

    await h.repository.accounts.markInvalid(account.id, 'upstream answered 401', 'keypool');
    await h.api('POST', `/admin/providers/openai/accounts/${account.id}/enable`);
    await h.repository.accounts.markInvalid(account.id, 'upstream answered 401', 'keypool');
    const invalid = await h.api('GET', `/admin/providers/openai/accounts/${account.id}`);
    expect(invalid.json.account.status).toBe('invalid');
    const enabled = await h.api('POST', `/admin/providers/openai/accounts/${account.id}/enable`);
    expect(enabled.status).toBe(200);
    expect(enabled.json.account).toMatchObject({ status: 'active', disabled_reason: null });
    const actions = (await auditActions('?action=account_enabled')).filter((e) => e.metadata?.accountId === account.id);
    expect(actions.length).toBeGreaterThanOrEqual(1);
    expect(actions[0].actor).toBe(TOKEN_NAME);
  });

  it('reports usage stats from account_usage_stats plus live rate state', async () => {
    const account = await createAccount('acct-stats');
    const minute = Math.floor(h.clock.nowMs() / 60_000) * 60_000;
    await h.repository.usage.add([
      {
        accountId: account.id,
        bucketStart: new Date(minute - 120_000),
        requests: 10,
        successes: 8,
        rateLimited: 2,
        clientErrors: 0,
        serverErrors: 0,
        inputTokens: 100,
        outputTokens: 50,
        cachedInputTokens: 0,
        cacheCreationInputTokens: 0,
        latencyMsSum: 1000,
      },
    ]);
    h.state.observe(
      'openai',
      account.id,
      {
        outcome: 'rate_limited',
        status: 429,
        cooldownUntilMs: h.clock.nowMs() + 20_000,
        learned: { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: null, tokensLimit: null, tokensRemaining: 5000, tokensResetAtMs: null },
      },
      h.clock.nowMs(),
    );
    const response = await h.api('GET', `/admin/providers/openai/accounts/${account.id}/stats`);
    expect(response.status, response.text).toBe(200);
    expect(response.json.totals).toMatchObject({ requests: 10, successes: 8, rate_limited: 2, latency_ms_avg: 100 });
    expect(response.json.buckets).toHaveLength(1);
    expect(response.json.live).toMatchObject({ remaining_requests: 0, remaining_tokens: 5000, cooldown_seconds_left: 20, in_flight: 0 });

    const window = await h.api(
      'GET',
      `/admin/providers/openai/accounts/${account.id}/stats?from=${new Date(minute - 60_000).toISOString()}&to=${new Date(minute + 60_000).toISOString()}`,
    );
    expect(window.json.buckets).toHaveLength(0);
    expectError(await h.api('GET', `/admin/providers/openai/accounts/${account.id}/stats?from=yesterday`), 400, 'invalid_parameter', 'from');
    expectError(
      await h.api('GET', `/admin/providers/openai/accounts/${account.id}/stats?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z`),
      400,
      'invalid_parameter',
      'from',
    );
  });

  it('checks health against the provider: success, rate limit, rejected key (marks invalid), timeout', async () => {
    const good = await createAccount('acct-health-good', UPSTREAM_KEYS.good);
    const ok = await h.api('POST', `/admin/providers/openai/accounts/${good.id}/check-health`);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toMatchObject({ ok: true, outcome: 'success', upstream_status: 200, account_status: 'active' });
    expect(ok.json.live).toMatchObject({ health: 'healthy', remaining_requests: 99 });
    expect(ok.text).not.toContain(UPSTREAM_KEYS.good);
    const probe = h.mock.requests.at(-1)!;
    expect(probe.path).toBe('/v1/models');
    expect(probe.headers.authorization).toBe(`Bearer ${UPSTREAM_KEYS.good}`);

    const limited = await createAccount('acct-health-limited', UPSTREAM_KEYS.limited);
    const rl = await h.api('POST', `/admin/providers/openai/accounts/${limited.id}/check-health`);
    expect(rl.json).toMatchObject({ ok: false, outcome: 'rate_limited', upstream_status: 429, account_status: 'active' });
    expect(rl.json.live.cooldown_seconds_left).toBe(20);

    const bad = await createAccount('acct-health-bad', UPSTREAM_KEYS.bad);
    const invalid = await h.api('POST', `/admin/providers/openai/accounts/${bad.id}/check-health`);
    expect(invalid.json).toMatchObject({ ok: false, outcome: 'invalid_credential', upstream_status: 401, account_status: 'invalid' });
    const invalidations = (await auditActions('?action=account_invalidated')).filter((e) => e.metadata?.accountId === bad.id);
    expect(invalidations).toHaveLength(1);
    expect(invalidations[0].actor).toBe(TOKEN_NAME);

    const slow = await createAccount('acct-health-slow', UPSTREAM_KEYS.slow);
    const timeout = await h.api('POST', `/admin/providers/openai/accounts/${slow.id}/check-health`);
    expect(timeout.json).toMatchObject({ ok: false, outcome: 'timeout', upstream_status: null });
  });

  it('uses the provider auth style and refuses providers without a known host', async () => {
    const anthropic = await createAccount('acct-anthropic', UPSTREAM_KEYS.good, 'anthropic');
    const ok = await h.api('POST', `/admin/providers/anthropic/accounts/${anthropic.id}/check-health`);
    expect(ok.json.outcome).toBe('success');
    const probe = h.mock.requests.at(-1)!;
    expect(probe.headers['x-api-key']).toBe(UPSTREAM_KEYS.good);
    expect(probe.headers['anthropic-version']).toBeDefined();
    expect(probe.headers.authorization).toBeUndefined();

    const azure = await createAccount('acct-azure', UPSTREAM_KEYS.good, 'azure-openai');
    expectError(await h.api('POST', `/admin/providers/azure-openai/accounts/${azure.id}/check-health`), 422, 'health_check_unavailable');
    // An account tag cannot point the probe (and the write-only key it carries) anywhere: only configuration can.
    const tagged = await h.api('PATCH', `/admin/providers/azure-openai/accounts/${azure.id}`, { body: { tags: { base_url: h.mock.url } } });
    expect(tagged.status).toBe(200);
    const probesBefore = h.mock.requests.length;
    expectError(await h.api('POST', `/admin/providers/azure-openai/accounts/${azure.id}/check-health`), 422, 'health_check_unavailable');
    expect(h.mock.requests.length).toBe(probesBefore);
  });
});

describe('system keys', () => {
  it('creates a key and returns it once; reads never show it', async () => {
    const created = await h.api('POST', '/admin/keys', {
      body: { name: 'svc-a', tenant_id: 'acme', allowed_ips: ['10.0.0.0/8', '2001:db8::/32'], expires_in: '90d', rotate_after_days: 30 },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json.api_key).toMatch(/^kp_[0-9A-Za-z]{32,}$/);
    expect(created.headers.get('cache-control')).toBe('no-store');
    expect(created.headers.get('location')).toBe(`/admin/keys/${created.json.key.id}`);
    const key = created.json.key;
    expect(key).toMatchObject({ name: 'svc-a', tenant_id: 'acme', status: 'active', rotate_after_days: 30, rotation_overdue: false });
    expect(key.allowed_ips).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    expect(created.json.api_key.startsWith(key.key_prefix)).toBe(true);

    const got = await h.api('GET', `/admin/keys/${key.id}`);
    expect(got.text).not.toContain(created.json.api_key);
    const list = await h.api('GET', '/admin/keys');
    expect(list.text).not.toContain(created.json.api_key);
    expect(list.json.items.map((k: any) => k.id)).toContain(key.id);

    const audit = await auditActions(`?key_id=${key.id}`);
    expect(audit.map((e) => e.action)).toContain('created');
    expect(audit[0].actor).toBe(TOKEN_NAME);
  });

  it('imports a key the client already has (import_key): digest only, never echoed, and it authenticates', async () => {
    const existing = `team-a-legacy-${'7'.repeat(20)}`;
    const created = await h.api('POST', '/admin/keys', { body: { name: 'legacy-import', tenant_id: 'team-a', import_key: existing } });
    expect(created.status, created.text).toBe(201);
    expect(created.json).not.toHaveProperty('api_key');
    expect(created.text).not.toContain(existing);
    expect(created.json.key).toMatchObject({ name: 'legacy-import', tenant_id: 'team-a', status: 'active' });
    expect(created.json.key.key_prefix.length).toBeLessThanOrEqual(existing.length / 4);
    await h.holder.reload();
    const snapshot = h.holder.current()!;
    expect(snapshot.keysByDigest.get(snapshot.digestKey(existing))?.key.id).toBe(created.json.key.id);
    const audit = await auditActions(`?key_id=${created.json.key.id}`);
    expect(audit[0].metadata.imported).toBe(true);
    expect(JSON.stringify(audit)).not.toContain(existing);

    const short = await h.api('POST', '/admin/keys', { body: { name: 'short', import_key: 'sk-short' } });
    expectError(short, 422, 'too_short', 'import_key');
    expect(short.text).not.toContain('sk-short');
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'again', import_key: existing } }), 409);
  });

  it('issues kp_<prefix>_<random> with prefix, so mappings have a stable part to match', async () => {
    const { apiKey } = await createKey('prefixed', { prefix: 'prod' });
    expect(apiKey).toMatch(/^kp_prod_[0-9A-Za-z]{40}$/);
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'p2', prefix: 'has_underscore' } }), 422, 'invalid_format', 'prefix');
  });

  it('validates key bodies: bad CIDR, bad duration, unknown field, missing name', async () => {
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'x', allowed_ips: ['010.0.0.1/8'] } }), 422, 'invalid_cidr', 'allowed_ips');
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'x', expires_in: 'soon' } }), 422, 'invalid_duration', 'expires_in');
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'x', colour: 'red' } }), 422, 'unknown_field', 'colour');
    expectError(await h.api('POST', '/admin/keys', { body: {} }), 422, 'required', 'name');
    expectError(await h.api('POST', '/admin/keys', { body: 'just a string' }), 422, 'invalid_type', 'body');
  });

  it('answers 409 for a duplicate name and 404 for unknown ids', async () => {
    await createKey('svc-dup');
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'svc-dup' } }), 409, 'conflict', 'name');
    expectError(await h.api('GET', `/admin/keys/${UNKNOWN_ID}`), 404, 'not_found');
    expectError(await h.api('PATCH', `/admin/keys/${UNKNOWN_ID}`, { body: { name: 'y' } }), 404);
    expectError(await h.api('DELETE', `/admin/keys/${UNKNOWN_ID}`), 404);
    expectError(await h.api('POST', `/admin/keys/${UNKNOWN_ID}/rotate`), 404);
    expectError(await h.api('POST', `/admin/keys/${UNKNOWN_ID}/revoke`), 404);
  });

  it('patches, revokes (idempotently) and soft-deletes a key', async () => {
    const { id } = await createKey('svc-life');
    const patched = await h.api('PATCH', `/admin/keys/${id}`, { body: { allowed_ips: '192.168.1.0/24', expires_at: null, rotate_after_days: 7 } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.key).toMatchObject({ allowed_ips: ['192.168.1.0/24'], expires_at: null, rotate_after_days: 7 });
    expectError(await h.api('PATCH', `/admin/keys/${id}`, { body: {} }), 422, 'empty_patch');

    const revoked = await h.api('POST', `/admin/keys/${id}/revoke`, { body: { reason: 'leaked' } });
    expect(revoked.json.key.status).toBe('revoked');
    const again = await h.api('POST', `/admin/keys/${id}/revoke`);
    expect(again.status).toBe(200);
    expect((await auditActions(`?key_id=${id}&action=revoked`))).toHaveLength(1);
    expectError(await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 60 } }), 409, 'invalid_state');

    expect((await h.api('DELETE', `/admin/keys/${id}`)).status).toBe(204);
    expectError(await h.api('GET', `/admin/keys/${id}`), 404);
    const list = await h.api('GET', '/admin/keys');
    expect(list.json.items.map((k: any) => k.id)).not.toContain(id);
    expect((await auditActions(`?key_id=${id}`)).map((e) => e.action)).toEqual(expect.arrayContaining(['created', 'updated', 'revoked', 'deleted']));
  });

  it('validates rotation input', async () => {
    const { id } = await createKey('svc-rot-input');
    expectError(await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: -1 } }), 422, 'out_of_range', 'grace_seconds');
    expectError(await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 1, grace: '1h' } }), 422, 'conflicting_fields');
    expectError(await h.api('POST', `/admin/keys/${id}/rotate`, { body: {}, headers: { 'idempotency-key': 'has space' } }), 400, 'invalid_idempotency_key');
  });

  it('lists keys due for rotation (?due=true) as the clock passes rotate_after_days', async () => {
    const { id } = await createKey('svc-due', { rotate_after_days: 1 });
    const notYet = await h.api('GET', '/admin/keys?due=true');
    expect(notYet.json.items.map((k: any) => k.id)).not.toContain(id);
    h.clock.advance(86_400_000 + 60_000);
    try {
      const due = await h.api('GET', '/admin/keys?due=true');
      expect(due.json.items.map((k: any) => k.id)).toContain(id);
      const row = due.json.items.find((k: any) => k.id === id);
      expect(row.rotation_overdue).toBe(true);
    } finally {
      h.clock.advance(-(86_400_000 + 60_000));
    }
  });
});

describe('priority mappings', () => {
  it('answers 501 on every mapping route while priority mapping is disabled', async () => {
    const disabled = await h.api('GET', '/admin/api-key-priority/mappings');
    expectError(disabled, 501, 'priority_disabled');
    expect(disabled.json.error.message).toContain('keypool config set priority.enabled true');
    expect(disabled.json.error.message).toContain('PUT /admin/settings/priority.enabled');
    expectError(await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_', match_type: 'prefix', priority: 1 } }), 501);
    expectError(await h.api('PUT', `/admin/api-key-priority/mappings/${UNKNOWN_ID}`, { body: {} }), 501);
    expectError(await h.api('DELETE', `/admin/api-key-priority/mappings/${UNKNOWN_ID}`), 501);
    expectError(await h.api('POST', '/admin/api-key-priority/reload'), 501);
    expectError(await h.api('GET', '/admin/api-key-priority/resolve?key_prefix=kp_x'), 501);
  });

  it('creates, lists, replaces, resolves and soft-deletes mappings once enabled', async () => {
    const enable = await h.api('PUT', '/admin/settings/priority.enabled', { body: { value: true } });
    expect(enable.status, enable.text).toBe(200);
    expect(enable.json.settings['priority.enabled']).toBe(true);

    const created = await h.api('POST', '/admin/api-key-priority/mappings', {
      body: { pattern: 'kp_vip', match_type: 'prefix', priority: 0, tenant_id: 'vip', tenant_name: 'VIP', tenant_type: 'external' },
    });
    expect(created.status, created.text).toBe(201);
    const mapping = created.json.mapping;
    expect(mapping).toMatchObject({ pattern: 'kp_vip', match_type: 'prefix', priority: 0, enabled: true });
    expectError(
      await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_vip', match_type: 'prefix', priority: 3 } }),
      409,
      'conflict',
      'pattern',
    );
    expectError(await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: '(a+)+$', match_type: 'regex', priority: 1 } }), 422, 'invalid_pattern', 'pattern');
    expectError(await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'x', match_type: 'glob', priority: 1 } }), 422, 'invalid_choice', 'match_type');

    const list = await h.api('GET', '/admin/api-key-priority/mappings');
    expect(list.json.items.map((m: any) => m.id)).toContain(mapping.id);

    const reload = await h.api('POST', '/admin/api-key-priority/reload');
    expect(reload.status, reload.text).toBe(200);
    expect(reload.json.reloaded).toBe(true);

    const resolved = await h.api('GET', '/admin/api-key-priority/resolve?key_prefix=kp_vip_customer_0001');
    expect(resolved.status, resolved.text).toBe(200);
    expect(resolved.json).toMatchObject({ priority: 0, mapping_id: mapping.id, match_type: 'prefix', pattern: 'kp_vip', default_applied: false, tenant_id: 'vip' });
    expect(resolved.text).not.toContain('kp_vip_customer_0001');
    const fallback = await h.api('GET', '/admin/api-key-priority/resolve?key_prefix=kp_other');
    expect(fallback.json).toMatchObject({ mapping_id: null, default_applied: true, priority: 7 });
    expectError(await h.api('GET', '/admin/api-key-priority/resolve'), 400, 'invalid_parameter', 'key_prefix');

    const replaced = await h.api('PUT', `/admin/api-key-priority/mappings/${mapping.id}`, { body: { pattern: 'kp_vip', match_type: 'prefix', priority: 2 } });
    expect(replaced.status, replaced.text).toBe(200);
    expect(replaced.json.mapping).toMatchObject({ priority: 2, tenant_id: null, tenant_name: null });
    expectError(await h.api('PUT', `/admin/api-key-priority/mappings/${mapping.id}`, { body: { priority: 2 } }), 422, 'required');
    expectError(await h.api('PUT', `/admin/api-key-priority/mappings/${UNKNOWN_ID}`, { body: { pattern: 'z', match_type: 'exact', priority: 2 } }), 404);

    expect((await h.api('DELETE', `/admin/api-key-priority/mappings/${mapping.id}`)).status).toBe(204);
    expectError(await h.api('DELETE', `/admin/api-key-priority/mappings/${mapping.id}`), 404);
    const afterDelete = await h.api('GET', '/admin/api-key-priority/mappings');
    expect(afterDelete.json.items.map((m: any) => m.id)).not.toContain(mapping.id);

    const actions = (await auditActions()).filter((e) => e.metadata?.mappingId === mapping.id).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['mapping_created', 'mapping_updated', 'mapping_deleted']));

    await h.api('PUT', '/admin/settings/priority.enabled', { body: { value: false } });
  });

  it('mapping windows: created as an object or one line, shown, resolved at an instant (?at=), refused with field errors', async () => {
    await h.api('PUT', '/admin/settings/priority.enabled', { body: { value: true } });
    const window = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '20:00', timezone: 'Europe/Berlin' };
    const day = await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_batch-', match_type: 'prefix', priority: 7, window } });
    expect(day.status, day.text).toBe(201);
    expect(day.json.mapping.window).toEqual(window);
    const night = await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_batch-', match_type: 'prefix', priority: 3 } });
    expect(night.status, night.text).toBe(201);
    expect(night.json.mapping.window).toBeNull();
    const weekend = await h.api('POST', '/admin/api-key-priority/mappings', {
      body: { pattern: 'kp_batch-', match_type: 'prefix', priority: 8, window: 'sat,sun 22:00-06:00 America/New_York' },
    });
    expect(weekend.json.mapping.window).toEqual({ days: ['sat', 'sun'], start: '22:00', end: '06:00', timezone: 'America/New_York' });
    expectError(
      await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_batch-', match_type: 'prefix', priority: 1, window } }),
      409,
      'conflict',
    );
    expectError(
      await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_x', match_type: 'prefix', priority: 1, window: { ...window, timezone: 'Berlin' } } }),
      422,
      'invalid_choice',
      'window.timezone',
    );
    expectError(
      await h.api('POST', '/admin/api-key-priority/mappings', { body: { pattern: 'kp_x', match_type: 'prefix', priority: 1, window: { ...window, start: '8am' } } }),
      422,
      'invalid_format',
      'window.start',
    );
    expect((await h.api('POST', '/admin/api-key-priority/reload')).status).toBe(200);

    const resolve = (at?: string) => h.api('GET', `/admin/api-key-priority/resolve?key_prefix=kp_batch-nightly_1${at === undefined ? '' : `&at=${at}`}`);
    const inside = await resolve('2026-03-04T11:00:00Z');
    expect(inside.status, inside.text).toBe(200);
    expect(inside.json).toMatchObject({ priority: 7, mapping_id: day.json.mapping.id, window, at: '2026-03-04T11:00:00.000Z' });
    expect((await resolve('2026-03-08T04:00:00Z')).json).toMatchObject({ priority: 8, mapping_id: weekend.json.mapping.id });
    expect((await resolve('2026-03-04T20:00:00Z')).json).toMatchObject({ priority: 3, mapping_id: night.json.mapping.id, window: null });
    const now = await resolve();
    expect(now.json.at).toBe(new Date(h.clock.nowMs()).toISOString());
    expectError(await resolve('yesterday'), 400, 'invalid_parameter', 'at');

    const cleared = await h.api('PUT', `/admin/api-key-priority/mappings/${weekend.json.mapping.id}`, {
      body: { pattern: 'kp_batch-', match_type: 'prefix', priority: 8, window: 'sun 00:00-01:00 UTC' },
    });
    expect(cleared.json.mapping.window).toEqual({ days: ['sun'], start: '00:00', end: '01:00', timezone: 'UTC' });
    for (const created of [day, night, weekend]) expect((await h.api('DELETE', `/admin/api-key-priority/mappings/${created.json.mapping.id}`)).status).toBe(204);
    await h.api('PUT', '/admin/settings/priority.enabled', { body: { value: false } });
  });
});

describe('settings', () => {
  it('reads and sets settings through the shared validation', async () => {
    const settings = await h.api('GET', '/admin/settings');
    expect(settings.json.settings).toHaveProperty('priority.default_priority');
    const set = await h.api('PUT', '/admin/settings/priority.default_priority', { body: { value: 5 } });
    expect(set.json.settings['priority.default_priority']).toBe(5);
    expectError(await h.api('PUT', '/admin/settings/priority.default_priority', { body: { value: 42 } }), 422, 'out_of_range', 'value');
    expectError(await h.api('PUT', '/admin/settings/priority.nonsense', { body: { value: 1 } }), 422, 'unknown_setting', 'name');
    expectError(await h.api('PUT', '/admin/settings/priority.enabled', { body: { enabled: true } }), 422, 'required', 'value');
    const audit = await auditActions('?action=config_set');
    expect(audit[0]).toMatchObject({ action: 'config_set', actor: TOKEN_NAME });
    await h.api('PUT', '/admin/settings/priority.default_priority', { body: { value: 7 } });
  });
});

describe('audit', () => {
  it('filters by key, action and since, and paginates with a cursor', async () => {
    const { id } = await createKey('svc-audit');
    await h.api('PATCH', `/admin/keys/${id}`, { body: { name: 'svc-audit-2' } });
    await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 0 } });
    await h.api('POST', `/admin/keys/${id}/revoke`);
    const all = await h.api('GET', `/admin/audit?key_id=${id}`);
    expect(all.json.items.map((e: any) => e.action)).toEqual(['revoked', 'rotated', 'updated', 'created']);

    const first = await h.api('GET', `/admin/audit?key_id=${id}&limit=3`);
    expect(first.json.items).toHaveLength(3);
    expect(first.json.next_cursor).toEqual(expect.any(String));
    const second = await h.api('GET', `/admin/audit?key_id=${id}&limit=3&cursor=${first.json.next_cursor}`);
    expect(second.json.items.map((e: any) => e.action)).toEqual(['created']);
    expect(second.json.next_cursor).toBeNull();

    const rotated = await h.api('GET', `/admin/audit?key_id=${id}&action=rotated`);
    expect(rotated.json.items).toHaveLength(1);
    const future = await h.api('GET', `/admin/audit?key_id=${id}&since=2999-01-01T00:00:00Z`);
    expect(future.json.items).toHaveLength(0);

    expectError(await h.api('GET', '/admin/audit?key_id=nope'), 400, 'invalid_parameter', 'key_id');
    expectError(await h.api('GET', '/admin/audit?action=exploded'), 400, 'invalid_parameter', 'action');
    expectError(await h.api('GET', '/admin/audit?since=last-week'), 400, 'invalid_parameter', 'since');
    expectError(await h.api('GET', '/admin/audit?limit=0'), 400, 'invalid_parameter', 'limit');
    expectError(await h.api('GET', '/admin/audit?cursor=abc'), 400, 'invalid_parameter', 'cursor');
  });
});
