// No admin response body, log line (captured pino output) or metric ever contains an upstream key or a full client
// key, except the one response that issues a client key. Exercises every path that handles a secret: creation,
// update, rotation (with replay), validation failures, broken JSON, health checks, decisions and upstream answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, UPSTREAM_KEYS, type ApiOptions, type ApiResponse, type Harness } from './harness.js';

let h: Harness;
const bodies: Array<{ what: string; text: string; headers: string }> = [];
/** Responses allowed to carry a client key: the ones that issued it (and an idempotent replay of that answer). */
const issuing = new Map<string, string[]>();

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

async function call(method: string, path: string, options: ApiOptions = {}): Promise<ApiResponse> {
  const response = await h.api(method, path, options);
  const headers = [...response.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n');
  bodies.push({ what: `${method} ${path} -> ${response.status}`, text: response.text, headers });
  return response;
}

function issued(response: ApiResponse): string {
  const key: string = response.json.api_key;
  expect(key).toMatch(/^kp_/);
  issuing.set(key, [...(issuing.get(key) ?? []), response.text]);
  return key;
}

const EXTRA_UPSTREAM = 'sk-patched-upstream-secret-99999999';
const MALFORMED_UPSTREAM = 'sk-malformed upstream-secret-7777';

describe('secrets never leak', () => {
  it('through responses, logs or metrics across every secret-handling path', async () => {
    // Upstream keys in: create, patch, a rejected create, broken JSON carrying one.
    const accountIds: string[] = [];
    for (const [name, apiKey] of Object.entries(UPSTREAM_KEYS)) {
      const created = await call('POST', '/admin/providers/openai/accounts', { body: { name: `leak-${name}`, api_key: apiKey, tags: { team: 'x' } } });
      expect(created.status).toBe(201);
      accountIds.push(created.json.account.id);
    }
    await call('PATCH', `/admin/providers/openai/accounts/${accountIds[0]}`, { body: { api_key: EXTRA_UPSTREAM } });
    await call('PATCH', `/admin/providers/openai/accounts/${accountIds[0]}`, { body: { api_key: UPSTREAM_KEYS.good } });
    await call('PATCH', `/admin/providers/openai/accounts/${accountIds[1]}`, { body: { api_key: MALFORMED_UPSTREAM, weight: -5 } });
    await call('POST', '/admin/providers/openai/accounts', { body: { name: 'leak-bad', api_key: MALFORMED_UPSTREAM } });
    await call('POST', '/admin/providers/openai/accounts', { rawBody: `{"name":"x","api_key":"${UPSTREAM_KEYS.good}"` });
    await call('POST', '/admin/providers/nope/accounts', { body: { name: 'x', api_key: UPSTREAM_KEYS.good } });
    for (const id of accountIds) {
      await call('POST', `/admin/providers/openai/accounts/${id}/check-health`);
      await call('GET', `/admin/providers/openai/accounts/${id}/stats`);
    }
    await call('POST', `/admin/providers/openai/accounts/${accountIds[1]}/enable`);
    await call('GET', '/admin/providers/openai/accounts');
    await call('GET', '/admin/providers');

    // Client keys out: create, rotate (plain and idempotent with a replay), then every read.
    const created = await call('POST', '/admin/keys', { body: { name: 'leak-client', allowed_ips: ['10.0.0.0/8'] } });
    const firstKey = issued(created);
    const keyId: string = created.json.key.id;
    await h.holder.reload();
    const rotated = await call('POST', `/admin/keys/${keyId}/rotate`, { body: { grace_seconds: 600 } });
    const secondKey = issued(rotated);
    const headers = { 'idempotency-key': 'leak-rotation' };
    const idem = await call('POST', `/admin/keys/${keyId}/rotate`, { body: { grace_seconds: 600 }, headers });
    const thirdKey = issued(idem);
    const replay = await call('POST', `/admin/keys/${keyId}/rotate`, { body: { grace_seconds: 600 }, headers });
    expect(issued(replay)).toBe(thirdKey);
    const other = await call('POST', '/admin/keys', { body: { name: 'leak-other' } });
    const otherKey = issued(other);
    await h.holder.reload();

    // Keys pasted where they do not belong: a path, a query, a body field, a mapping resolve.
    await call('GET', `/admin/keys/${thirdKey}`);
    await call('GET', `/admin/audit?key_id=${thirdKey}`);
    await call('GET', `/admin/keys?tenant_id=${thirdKey}`);
    await call('PATCH', `/admin/keys/${keyId}`, { body: { name: thirdKey.repeat(4) } });
    await call('POST', '/admin/keys', { rawBody: `{"name": "${otherKey}` });
    await call('PUT', '/admin/settings/priority.enabled', { body: { value: true } });
    await call('GET', `/admin/api-key-priority/resolve?key_prefix=${encodeURIComponent(thirdKey)}`);
    await call('PUT', '/admin/settings/priority.enabled', { body: { value: false } });

    // Decisions: allowed, rotated-out, unknown, from a refused address; upstream 429 and 401.
    const view = (key: string, ip = '10.0.0.7') => ({ headers: { authorization: `Bearer ${key}` }, clientAddress: ip, provider: 'openai' });
    const decisions = [];
    for (const key of [firstKey, secondKey, thirdKey, otherKey, `${thirdKey}x`]) decisions.push(await h.engine.decide(view(key)));
    decisions.push(await h.engine.decide(view(thirdKey, '192.168.0.1')));
    for (const outcome of decisions) {
      const text = JSON.stringify(outcome.decision.kind === 'deny' ? outcome.decision : { ...outcome.decision, setHeaders: [] });
      for (const key of [firstKey, secondKey, thirdKey, otherKey]) expect(text).not.toContain(key);
      if (outcome.ticket) {
        h.engine.observe(outcome.ticket, 429, { 'retry-after': '1' });
        h.engine.release(outcome.ticket);
      }
    }
    const allowed = decisions.find((d) => d.ticket !== null);
    expect(allowed).toBeDefined();
    const again = await h.engine.decide(view(thirdKey));
    if (again.ticket) {
      h.engine.observe(again.ticket, 401, { 'www-authenticate': `Bearer ${UPSTREAM_KEYS.good}` });
      h.engine.release(again.ticket);
    }
    await h.writes.flush();

    await call('POST', `/admin/keys/${keyId}/revoke`, { body: { reason: 'leak test' } });
    await call('GET', '/admin/audit?limit=1000');
    await call('GET', '/admin/keys');
    await call('GET', `/admin/keys/${keyId}`);
    const metrics = await call('GET', '/metrics');
    expect(metrics.status).toBe(200);

    const clientKeys = [firstKey, secondKey, thirdKey, otherKey];
    const upstreamKeys = [...Object.values(UPSTREAM_KEYS), EXTRA_UPSTREAM, MALFORMED_UPSTREAM];
    expect(bodies.length).toBeGreaterThan(30);
    for (const { what, text, headers: responseHeaders } of bodies) {
      for (const secret of upstreamKeys) {
        expect(text, `${what} leaks an upstream key`).not.toContain(secret);
        expect(responseHeaders, `${what} leaks an upstream key in a header`).not.toContain(secret);
      }
      for (const key of clientKeys) {
        if (issuing.get(key)?.includes(text)) continue;
        expect(text, `${what} leaks a client key`).not.toContain(key);
        expect(responseHeaders, `${what} leaks a client key in a header`).not.toContain(key);
      }
    }
    expect(h.logs.length).toBeGreaterThan(10);
    const log = h.logs.join('\n');
    for (const secret of [...upstreamKeys, ...clientKeys]) expect(log).not.toContain(secret);
    // The malformed secret's halves must not show up either (a message quoting a truncated value would).
    expect(log).not.toContain('sk-malformed');
    for (const { text } of bodies) expect(text).not.toContain('sk-malformed');
  });
});
