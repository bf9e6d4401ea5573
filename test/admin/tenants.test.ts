// /admin/tenants over HTTP against a real (PGlite) store, keys with quotas, the usage endpoint after real decisions
// through the engine, the metrics they feed, and validation errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, UPSTREAM_KEYS, type Harness } from './harness.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

function expectError(response: { status: number; json: any }, status: number, code: string, field?: string): void {
  expect(response.status, JSON.stringify(response.json)).toBe(status);
  expect(response.json.error.code).toBe(code);
  if (field !== undefined) expect(response.json.error.field).toBe(field);
}

describe('/admin/tenants', () => {
  it('creates, reads, changes and deletes a tenant, auditing each write', async () => {
    const created = await h.api('POST', '/admin/tenants', { body: { id: 'acme', name: 'ACME Corp', rpm_limit: 600 } });
    expect(created.status, created.text).toBe(201);
    expect(created.headers.get('location')).toBe('/admin/tenants/acme');
    expect(created.json.tenant).toMatchObject({ id: 'acme', name: 'ACME Corp', rpm_limit: 600, rpd_limit: null });
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'acme' } }), 409, 'conflict');
    // The name defaults to the id.
    expect((await h.api('POST', '/admin/tenants', { body: { id: 'team.b_2' } })).json.tenant.name).toBe('team.b_2');

    const patched = await h.api('PATCH', '/admin/tenants/acme', { body: { rpd_limit: 1000, rpm_limit: null } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.tenant).toMatchObject({ rpm_limit: null, rpd_limit: 1000 });
    expect((await h.api('GET', '/admin/tenants/acme')).json.tenant.rpd_limit).toBe(1000);
    expect((await h.api('GET', '/admin/tenants')).json.items.map((t: any) => t.id)).toEqual(['acme', 'team.b_2']);

    expect((await h.api('DELETE', '/admin/tenants/team.b_2')).status).toBe(204);
    expectError(await h.api('GET', '/admin/tenants/team.b_2'), 404, 'not_found');
    const audit = (await h.api('GET', '/admin/audit?action=tenant_updated')).json.items;
    expect(audit[0].metadata).toEqual({ id: 'acme', changes: { rpmLimit: null, rpdLimit: 1000 } });
    // Token quotas: a tpd above 2^31 is stored exactly (BIGINT) and read back as a number.
    const tokens = await h.api('PATCH', '/admin/tenants/acme', { body: { tpm_limit: 200000, tpd_limit: 5_000_000_000 } });
    expect(tokens.status, tokens.text).toBe(200);
    expect((await h.api('GET', '/admin/tenants/acme')).json.tenant).toMatchObject({ tpm_limit: 200000, tpd_limit: 5_000_000_000 });
    expect((await h.api('GET', '/admin/audit?action=tenant_deleted')).json.items).toHaveLength(1);
  });

  it('refuses bad input with the field named', async () => {
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'a b' } }), 422, 'invalid_format', 'id');
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'x', rpm_limit: 0 } }), 422, 'out_of_range', 'rpm_limit');
    // Token quotas (migration 0011): tpm is an INTEGER limit, tpd a BIGINT bounded to 2^53 - 1.
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'x', tpm_limit: 0 } }), 422, 'out_of_range', 'tpm_limit');
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'x', tpd_limit: 0 } }), 422, 'out_of_range', 'tpd_limit');
    expectError(await h.api('POST', '/admin/tenants', { body: { id: 'x', tokens_per_minute: 5 } }), 422, 'unknown_field');
    expectError(await h.api('PATCH', '/admin/tenants/acme', { body: {} }), 422, 'empty_patch');
    expectError(await h.api('GET', '/admin/tenants/a%20b'), 400, 'invalid_parameter', 'id');
    expectError(await h.api('POST', '/admin/keys', { body: { name: 'k', rpd_limit: -1 } }), 422, 'out_of_range', 'rpd_limit');
  });

  it('keys carry rpm/rpd limits; usage reports the shared windows and this replica\'s outcomes', async () => {
    await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'quota-acct', api_key: UPSTREAM_KEYS.good } });
    await h.api('POST', '/admin/tenants', { body: { id: 'limited', rpd_limit: 2 } });
    const key = await h.api('POST', '/admin/keys', { body: { name: 'limited-key', tenant_id: 'limited', rpm_limit: 10 } });
    expect(key.status, key.text).toBe(201);
    expect(key.json.key).toMatchObject({ rpm_limit: 10, rpd_limit: null });
    const patched = await h.api('PATCH', `/admin/keys/${key.json.key.id}`, { body: { rpd_limit: 50 } });
    expect(patched.json.key).toMatchObject({ rpm_limit: 10, rpd_limit: 50 });
    await eventually(() => [...(h.holder.current()?.keysByDigest.values() ?? [])].some((e) => e.key.quota?.rpdLimit === 50));

    const decide = () => h.engine.decide({ headers: { authorization: `Bearer ${key.json.api_key}` }, clientAddress: '127.0.0.1:1', provider: 'openai' });
    const outcomes = [];
    for (let i = 0; i < 3; i++) {
      const outcome = await decide();
      if (outcome.ticket) h.engine.release(outcome.ticket);
      outcomes.push(outcome.decision.kind === 'allow' ? 'allow' : outcome.decision.code);
    }
    expect(outcomes).toEqual(['allow', 'allow', 'quota_exceeded']);

    const usage = await h.api('GET', '/admin/tenants/limited/usage');
    expect(usage.status, usage.text).toBe(200);
    expect(usage.json).toMatchObject({
      tenant_id: 'limited',
      minute: { used: null, limit: null },
      day: { used: 2, limit: 2, time_zone: 'UTC' },
      this_replica: { admitted: 2, refused: { quota_exceeded: 1 } },
    });
    // No token quota: not counted.
    expect(usage.json.token_quota).toEqual({ minute: { used: null, limit: null }, day: { used: null, limit: null } });
    expect(Date.parse(usage.json.day.ends_at) - Date.parse(usage.json.day.starts_at)).toBe(86_400_000);
    expectError(await h.api('GET', '/admin/tenants/nobody/usage'), 404, 'not_found');

    // A token day quota: the requests' reserved estimates (no body: tokens.default_output each) are counted.
    await h.api('PATCH', '/admin/tenants/limited', { body: { rpd_limit: null, tpd_limit: 1_000_000 } });
    await eventually(() => h.holder.current()?.tenants?.get('limited')?.tpdLimit === 1_000_000);
    const counted = await decide();
    expect(counted.ticket?.reservedTokens).toBe(1024);
    h.engine.release(counted.ticket!);
    h.engine.reconcileTokens(counted.ticket!, 24);
    expect((await h.api('GET', '/admin/tenants/limited/usage')).json.token_quota).toEqual({
      minute: { used: null, limit: null },
      day: { used: 24, limit: 1_000_000 },
    });

    const metrics = (await h.api('GET', '/metrics', { token: null })).text;
    expect(metrics).toContain('keypool_tenant_requests_total{tenant="limited",outcome="allow",code="none"} 3');
    expect(metrics).toContain('keypool_tenant_requests_total{tenant="limited",outcome="deny",code="quota_exceeded"} 1');
  });

  it('token usage recorded per response reaches the account stats, the tenant usage (tokens in [from, to)) and the metrics', async () => {
    await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'token-acct', api_key: UPSTREAM_KEYS.good } });
    await h.api('POST', '/admin/tenants', { body: { id: 'tokens-t' } });
    const key = await h.api('POST', '/admin/keys', { body: { name: 'tokens-key', tenant_id: 'tokens-t' } });
    const other = await h.api('POST', '/admin/keys', { body: { name: 'untenanted-key' } });
    await eventually(() => [...(h.holder.current()?.keysByDigest.values() ?? [])].some((e) => e.key.id === other.json.key.id));
    await eventually(() => h.holder.current()?.tenants?.has('tokens-t') === true);
    const decide = async (apiKey: string) => {
      const outcome = await h.engine.decide({ headers: { authorization: `Bearer ${apiKey}` }, clientAddress: '127.0.0.1:1', provider: 'openai' });
      expect(outcome.ticket).not.toBeNull();
      h.engine.release(outcome.ticket!);
      return outcome.ticket!;
    };
    const first = await decide(key.json.api_key);
    expect(first.tenantId).toBe('tokens-t');
    h.engine.recordUsage(first, { inputTokens: 1200, outputTokens: 34, cachedInputTokens: 1024, cacheCreationInputTokens: 0, estimated: false });
    h.engine.recordUsage(await decide(key.json.api_key), { inputTokens: 0, outputTokens: 5, cachedInputTokens: 0, cacheCreationInputTokens: 0, estimated: true });
    const untenanted = await decide(other.json.api_key);
    h.engine.recordUsage(untenanted, { inputTokens: 7, outputTokens: 1, cachedInputTokens: 0, cacheCreationInputTokens: 3, estimated: false });
    await h.writes.flush();

    const usage = await h.api('GET', '/admin/tenants/tokens-t/usage');
    expect(usage.status, usage.text).toBe(200);
    expect(usage.json.tokens).toMatchObject({
      requests: 2,
      estimated_requests: 1,
      input_tokens: 1200,
      output_tokens: 39,
      cached_input_tokens: 1024,
      cache_creation_input_tokens: 0,
      cost_usd: 0,
    });
    // A window that ends before the usage was recorded sees none of it.
    const before = await h.api('GET', `/admin/tenants/tokens-t/usage?from=${encodeURIComponent(new Date(Date.now() - 7_200_000).toISOString())}&to=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`);
    expect(before.json.tokens).toMatchObject({ requests: 0, input_tokens: 0, output_tokens: 0 });
    expectError(await h.api('GET', '/admin/tenants/tokens-t/usage?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z'), 400, 'invalid_parameter', 'from');
    expectError(await h.api('GET', '/admin/tenants/tokens-t/usage?window=1h'), 400, 'unknown_parameter');

    const keyTotals = await h.repository.tokenUsage.totals({ keyId: other.json.key.id, from: new Date(Date.now() - 3_600_000), to: new Date(Date.now() + 60_000) });
    expect(keyTotals).toMatchObject({ requests: 1, inputTokens: 7, outputTokens: 1, cacheCreationInputTokens: 3 });
    // The account buckets: every token lands on the account that served its response (the pool may hold several).
    const rows = await h.repository.usage.query({ from: new Date(Date.now() - 3_600_000), to: new Date(Date.now() + 60_000) });
    const sum = (pick: (row: (typeof rows)[number]) => number) => rows.reduce((n, row) => n + pick(row), 0);
    expect([sum((r) => r.inputTokens), sum((r) => r.outputTokens), sum((r) => r.cachedInputTokens), sum((r) => r.cacheCreationInputTokens)]).toEqual([1207, 40, 1024, 3]);
    const stats = await h.api('GET', `/admin/providers/openai/accounts/${untenanted.accountId}/stats`);
    expect(stats.status, stats.text).toBe(200);
    expect(stats.json.totals.cache_creation_input_tokens).toBe(3);

    const metrics = (await h.api('GET', '/metrics', { token: null })).text;
    expect(metrics).toContain(`keypool_tokens_total{provider="openai",account="${untenanted.accountName}",direction="cache_creation"} 3`);
    expect(metrics).toContain('keypool_tenant_tokens_total{tenant="tokens-t",direction="cached_input"} 1024');
    expect(metrics).toContain('keypool_tenant_tokens_total{tenant="other",direction="cache_creation"} 3');
  });

  it('token prices: set, listed, audited, compiled into the snapshot; a response costs what its model is priced at', async () => {
    const put = (body: Record<string, unknown>) => h.api('PUT', '/admin/prices', { body });
    const set = await put({ provider: 'openai', model: 'gpt-4o*', input: 2.5, output: 10, cached_input: 1.25 });
    expect(set.status, set.text).toBe(200);
    expect(set.json.price).toMatchObject({ provider: 'openai', model: 'gpt-4o*', input: 2.5, output: 10, cached_input: 1.25, cache_creation: null });
    expect((await put({ provider: 'openai', model: '*', input: 1, output: 1 })).status).toBe(200);
    // Replacing keeps one row; OpenRouter-style names with a slash are plain model names.
    expect((await put({ provider: 'openai', model: '*', input: 1, output: 2 })).status).toBe(200);
    expect((await put({ provider: 'openrouter', model: 'openai/gpt-4o', input: 3, output: 12 })).status).toBe(200);
    const listed = await h.api('GET', '/admin/prices');
    expect(listed.json.items.map((p: any) => `${p.provider} ${p.model} ${p.output}`)).toEqual(['openai * 2', 'openai gpt-4o* 10', 'openrouter openai/gpt-4o 12']);
    expectError(await put({ provider: 'openai', model: 'a*b', input: 1, output: 1 }), 422, 'invalid_format', 'model');
    expectError(await put({ provider: 'openai', model: 'm', input: -1, output: 1 }), 422, 'out_of_range', 'input');
    expectError(await put({ provider: 'openai', model: 'm', input: 1 }), 422, 'required', 'output');
    expectError(await h.api('DELETE', '/admin/prices?provider=openai&model=nope'), 404, 'not_found');
    expect((await h.api('DELETE', `/admin/prices?provider=openrouter&model=${encodeURIComponent('openai/gpt-4o')}`)).status).toBe(204);
    const audit = (await h.api('GET', '/admin/audit?action=config_set')).json.items;
    expect(audit.some((row: any) => row.metadata.name === 'token_price' && row.metadata.value?.model === 'gpt-4o*')).toBe(true);

    await eventually(() => h.holder.current()?.prices?.get('openai')?.get('*')?.outputUsdPerMTok === 2);
    await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'price-acct', api_key: UPSTREAM_KEYS.good } });
    await h.api('POST', '/admin/tenants', { body: { id: 'priced' } });
    const key = await h.api('POST', '/admin/keys', { body: { name: 'priced-key', tenant_id: 'priced' } });
    await eventually(() => [...(h.holder.current()?.keysByDigest.values() ?? [])].some((e) => e.key.id === key.json.key.id));
    const decide = async () => {
      const outcome = await h.engine.decide({ headers: { authorization: `Bearer ${key.json.api_key}` }, clientAddress: '127.0.0.1:1', provider: 'openai' });
      h.engine.release(outcome.ticket!);
      return outcome.ticket!;
    };
    const u = { inputTokens: 1200, outputTokens: 34, cachedInputTokens: 1024, cacheCreationInputTokens: 0, estimated: false };
    h.engine.recordUsage(await decide(), u, 'gpt-4o-2024-08-06'); // gpt-4o*: (176 * 2.5 + 1024 * 1.25 + 34 * 10) / 1e6
    h.engine.recordUsage(await decide(), u, 'o3'); // *: (1200 * 1 + 34 * 2) / 1e6
    h.engine.recordUsage(await decide(), u, null); // no model named: * as well
    await h.writes.flush();
    const usage = await h.api('GET', '/admin/tenants/priced/usage');
    expect(usage.json.tokens.requests).toBe(3);
    expect(usage.json.tokens.cost_usd).toBeCloseTo((176 * 2.5 + 1024 * 1.25 + 34 * 10 + 2 * (1200 + 68)) / 1e6, 9);
  });

  it('priority.reserve is a setting: an array of 10 fractions or an object of some', async () => {
    const set = await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: { P9: 0.5 } } });
    expect(set.status, set.text).toBe(200);
    expect(set.json.settings['priority.reserve']).toEqual([0, 0, 0, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25, 0.5]);
    expectError(await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: [0, 1] } }), 422, 'invalid_format', 'value');
    expectError(await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: { P3: 1 } } }), 422, 'out_of_range', 'value');
  });
});
