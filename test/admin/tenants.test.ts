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
    expect(usage.json.tokens).toEqual({ minute: { used: null, limit: null }, day: { used: null, limit: null } });
    expect(Date.parse(usage.json.day.ends_at) - Date.parse(usage.json.day.starts_at)).toBe(86_400_000);
    expectError(await h.api('GET', '/admin/tenants/nobody/usage'), 404, 'not_found');

    // A token day quota: the requests' reserved estimates (no body: tokens.default_output each) are counted.
    await h.api('PATCH', '/admin/tenants/limited', { body: { rpd_limit: null, tpd_limit: 1_000_000 } });
    await eventually(() => h.holder.current()?.tenants?.get('limited')?.tpdLimit === 1_000_000);
    const counted = await decide();
    expect(counted.ticket?.reservedTokens).toBe(1024);
    h.engine.release(counted.ticket!);
    h.engine.reconcileTokens(counted.ticket!, 24);
    expect((await h.api('GET', '/admin/tenants/limited/usage')).json.tokens).toEqual({
      minute: { used: null, limit: null },
      day: { used: 24, limit: 1_000_000 },
    });

    const metrics = (await h.api('GET', '/metrics', { token: null })).text;
    expect(metrics).toContain('keypool_tenant_requests_total{tenant="limited",outcome="allow",code="none"} 3');
    expect(metrics).toContain('keypool_tenant_requests_total{tenant="limited",outcome="deny",code="quota_exceeded"} 1');
  });

  it('priority.reserve is a setting: an array of 10 fractions or an object of some', async () => {
    const set = await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: { P9: 0.5 } } });
    expect(set.status, set.text).toBe(200);
    expect(set.json.settings['priority.reserve']).toEqual([0, 0, 0, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25, 0.5]);
    expectError(await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: [0, 1] } }), 422, 'invalid_format', 'value');
    expectError(await h.api('PUT', '/admin/settings/priority.reserve', { body: { value: { P3: 1 } } }), 422, 'out_of_range', 'value');
  });
});
