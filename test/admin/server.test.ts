// Server start rules, token comparison and the router, without a database where none is needed.
import { describe, expect, it } from 'vitest';
import { TokenAuth } from '../../src/admin/auth.js';
import type { AdminDeps } from '../../src/admin/deps.js';
import { HttpError } from '../../src/admin/http-errors.js';
import { KeypoolMetrics } from '../../src/admin/metrics.js';
import { Router, type RouteDef } from '../../src/admin/router.js';
import { startAdminServer } from '../../src/admin/server.js';
import { ConfigError } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startHarness, TOKEN_NAME, UPSTREAM_KEYS } from './harness.js';

const logger = createLogger('silent');

describe('startAdminServer', () => {
  it.each(['0.0.0.0:0', '[::]:0', '10.0.0.1:0', 'example.internal:0'])('refuses to start on %s without a token', async (listen) => {
    const deps = { metrics: new KeypoolMetrics({ processMetrics: false }) } as unknown as AdminDeps;
    const attempt = startAdminServer({ listen, tokenName: 'admin', deps, logger });
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(startAdminServer({ listen, tokenName: 'admin', deps, logger })).rejects.toThrow(/KEYPOOL_ADMIN_TOKEN/);
  });

  it('on loopback without a token, serves every route and audits writes as the token name', async () => {
    const h = await startHarness({ token: undefined });
    try {
      const list = await h.api('GET', '/admin/keys', { token: null });
      expect(list.status).toBe(200);
      const created = await h.api('POST', '/admin/keys', { token: null, body: { name: 'open-loopback' } });
      expect(created.status).toBe(201);
      const audit = await h.api('GET', `/admin/audit?key_id=${created.json.key.id}`, { token: null });
      expect(audit.json.items[0].actor).toBe(TOKEN_NAME);
    } finally {
      await h.close();
    }
  });

  it('answers 500 without details when the store fails, and logs it with the request id', async () => {
    const h = await startHarness();
    try {
      await h.holder.stop();
      await h.sql.close();
      const response = await h.api('GET', '/admin/keys', { headers: { 'x-request-id': 'broken-db-1' } });
      expect(response.status).toBe(500);
      expect(response.json.error).toEqual({ code: 'internal_error', message: expect.stringContaining('request id'), field: null });
      const line = h.logs.map((l) => JSON.parse(l)).find((entry) => entry.msg === 'admin request failed');
      expect(line).toMatchObject({ requestId: 'broken-db-1', route: '/admin/keys' });
      expect((await h.api('GET', '/healthz')).status).toBe(200);
    } finally {
      await h.close();
    }
  });

  it('answers 503 timeout when a handler passes its deadline', async () => {
    const h = await startHarness({ handlerTimeoutMs: 1_000, healthCheckTimeoutMs: 5_000 });
    try {
      const account = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'slow', api_key: UPSTREAM_KEYS.slow } });
      const response = await h.api('POST', `/admin/providers/openai/accounts/${account.json.account.id}/check-health`);
      expect(response.status).toBe(503);
      expect(response.json.error.code).toBe('timeout');
    } finally {
      await h.close();
    }
  });

  it('closes promptly with idle keep-alive connections open', async () => {
    const h = await startHarness();
    await h.api('GET', '/healthz');
    const started = Date.now();
    await h.server.close();
    // Well under the 2 s grace that in-flight requests get: idle sockets are closed at once.
    expect(Date.now() - started).toBeLessThan(1_000);
    await h.close();
  });
});

describe('TokenAuth', () => {
  const auth = new TokenAuth([
    { name: 'ops', token: 'first-token-value' },
    { name: 'ci', token: 'second' },
  ]);

  it.each([
    ['Bearer first-token-value', 'ops'],
    ['bearer second', 'ci'],
    ['BEARER   second  ', 'ci'],
  ])('accepts %s as %s', (header, actor) => {
    expect(auth.authenticate(header)).toEqual({ ok: true, actor });
  });

  it.each([
    [undefined, 'missing_token'],
    ['', 'missing_token'],
    ['Bearer', 'invalid_token'],
    ['Bearer first-token-valu', 'invalid_token'],
    ['Bearer first-token-value-and-more', 'invalid_token'],
    ['Basic Zmlyc3Q=', 'invalid_token'],
    ['Bearer first-token-value extra', 'invalid_token'],
    [`Bearer ${'x'.repeat(10_000)}`, 'invalid_token'],
  ])('refuses %s (%s)', (header, code) => {
    const result = auth.authenticate(header);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.status).toBe(401);
      expect(result.error.code).toBe(code);
    }
  });

  it('refuses an empty configured token', () => {
    expect(() => new TokenAuth([{ name: 'x', token: '' }])).toThrow(/empty/);
  });
});

describe('Router', () => {
  const handler = async () => ({ status: 200 });
  const route = (method: RouteDef['method'], path: string): RouteDef => ({ method, path, access: 'token', handler });
  const router = new Router([
    route('GET', '/admin/things/:id'),
    route('POST', '/admin/things/reload'),
    route('GET', '/admin/providers/:slug'),
    route('PUT', '/admin/settings/:name'),
  ]);

  it('prefers literal segments and checks parameters', () => {
    expect(router.match('POST', '/admin/things/reload').route.path).toBe('/admin/things/reload');
    const match = router.match('GET', '/admin/things/0F0E0D0C-0000-4000-8000-000000000000');
    expect(match.params.id).toBe('0f0e0d0c-0000-4000-8000-000000000000');
    expect(router.match('PUT', '/admin/settings/priority.enabled').params.name).toBe('priority.enabled');
  });

  it('answers 405 with allow when the path exists for other methods', () => {
    try {
      router.match('DELETE', '/admin/things/reload');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(HttpError);
      expect((error as HttpError).status).toBe(405);
      expect((error as HttpError).headers.allow).toContain('POST');
    }
  });

  it.each([
    ['GET', '/admin/things/not-a-uuid', 400, 'invalid_uuid'],
    ['GET', '/admin/providers/Bad_Slug', 400, 'invalid_slug'],
    ['GET', '/admin/providers/%E0%A4%A', 400, 'invalid_path'],
    ['GET', '/admin/unknown', 404, 'route_not_found'],
    ['GET', '/admin/things/', 404, 'route_not_found'],
  ])('%s %s -> %i %s', (method, path, status, code) => {
    try {
      router.match(method, path);
      expect.unreachable();
    } catch (error) {
      expect((error as HttpError).status).toBe(status);
      expect((error as HttpError).code).toBe(code);
    }
  });

  it('refuses duplicate routes', () => {
    expect(() => new Router([route('GET', '/a/:id'), route('GET', '/a/:other')])).toThrow(/duplicate/);
  });
});

describe('parseBaseUrls', () => {
  it('reads provider=url pairs and refuses anything else', async () => {
    const { parseBaseUrls } = await import('../../src/admin/health-check.js');
    expect(parseBaseUrls('openai=http://127.0.0.1:8080, azure-openai=https://r.openai.azure.com/, x=http://[::1]:1/v')).toEqual({
      openai: 'http://127.0.0.1:8080',
      'azure-openai': 'https://r.openai.azure.com',
      x: 'http://[::1]:1/v',
    });
    expect(parseBaseUrls('')).toEqual({});
    for (const bad of ['openai', '=http://x', 'openai=ftp://x', 'Open AI=http://x']) expect(() => parseBaseUrls(bad)).toThrow();
    // The probe carries the upstream key: never in clear over the network, never with credentials or a query.
    for (const bad of ['openai=http://api.openai.com', 'openai=http://10.0.0.1', 'openai=https://u:p@api.openai.com', 'openai=https://h/?k=v']) {
      expect(() => parseBaseUrls(bad), bad).toThrow(/https|loopback/);
    }
  });
});
