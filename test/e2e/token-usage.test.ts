// Token usage end to end: the real Envoy with envoy/envoy-usage.yaml, keypool as `keypool serve` composes it
// (startKeypool: in-memory PGlite store, metrics, admin API), a mock provider reporting usage in JSON and SSE. The
// tenant usage endpoint and the metrics must show exactly the provider's figures, and the cost from a price.
// Skips with a notice when no Envoy binary is found, unless KEYPOOL_REQUIRE_ENVOY=1.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { envoyOrSkip, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';

const ENVOY = envoyOrSkip('test/e2e/token-usage.test.ts');
const ACTOR = 'e2e';
const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdef0123456789';

const JSON_BODY = JSON.stringify({ object: 'chat.completion', model: 'gpt-4o-2024-08-06', choices: [], usage: { prompt_tokens: 1200, completion_tokens: 34, prompt_tokens_details: { cached_tokens: 1024 } } });
const SSE_BODY = [
  ...Array.from({ length: 20 }, (_, i) => `data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"w${i} "}}]}\n\n`),
  'data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":57,"completion_tokens":81}}\n\n',
  'data: [DONE]\n\n',
].join('');

describe.skipIf(!ENVOY)('token usage through Envoy and keypool serve', () => {
  let upstream: Server;
  let keypool: RunningKeypool;
  let envoy: RunningEnvoy;
  let dataDir: string;
  let clientKey: string;

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      req.resume();
      const sse = (req.url ?? '').includes('stream');
      res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json' });
      res.end(sse ? SSE_BODY : JSON_BODY);
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-e2e-tokens-'));
    keypool = await startKeypool({ databaseUrl: 'memory://', dataDir, grpcListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', adminToken: ADMIN_TOKEN, demoSeed: false, logLevel: 'warn' });
    const repo = keypool.runtime.repository;
    await repo.accounts.create({ providerSlug: 'openai', name: 'acct-1', apiKey: `sk-${'x'.repeat(40)}` }, ACTOR);
    await repo.tenants.create({ id: 'acme', name: 'ACME' }, ACTOR);
    await repo.prices.set({ providerSlug: 'openai', model: 'gpt-4o*', inputUsdPerMTok: 2.5, outputUsdPerMTok: 10, cachedInputUsdPerMTok: 1.25, cacheCreationUsdPerMTok: null }, ACTOR);
    await repo.prices.set({ providerSlug: 'openai', model: 'gpt-4o-mini*', inputUsdPerMTok: 0.15, outputUsdPerMTok: 0.6, cachedInputUsdPerMTok: null, cacheCreationUsdPerMTok: null }, ACTOR);
    clientKey = (await repo.keys.create({ name: 'acme-key', tenantId: 'acme' }, ACTOR)).plaintextKey;
    await keypool.runtime.snapshots.reload('manual');
    const grpcPort = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
    const upstreamPort = (upstream.address() as AddressInfo).port;
    envoy = await startEnvoy({
      bin: ENVOY as string,
      config: renderEnvoyConfig('envoy/envoy-usage.yaml', { keypoolPort: grpcPort, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 }),
    });
  }, 60_000);

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.stop();
    upstream?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function call(path: string): Promise<number> {
    const res = await fetch(`${envoy.baseUrl}/openai/v1/${path}`, { method: 'POST', headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' }, body: '{}' });
    await res.text();
    return res.status;
  }

  it('records exactly the provider\'s figures per tenant, in the metrics, with the cost of each model', async () => {
    // keypool's health check must pass in Envoy first: retry until a request goes through, and count only those.
    let json = 0;
    for (let attempt = 0; attempt < 100 && json === 0; attempt++) {
      if ((await call('chat/completions')) === 200) json += 1;
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(json).toBe(1);
    expect(await call('chat/completions')).toBe(200);
    expect(await call('chat/completions?stream')).toBe(200);

    const admin = `http://${keypool.adminAddress}`;
    const expected = { requests: 3, estimated_requests: 0, input_tokens: 2 * 1200 + 57, output_tokens: 2 * 34 + 81, cached_input_tokens: 2 * 1024 };
    let tokens: Record<string, number> = {};
    for (let attempt = 0; attempt < 50; attempt++) {
      await keypool.runtime.writes.flush();
      const res = await fetch(`${admin}/admin/tenants/acme/usage`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      tokens = ((await res.json()) as { tokens: Record<string, number> }).tokens;
      if (tokens['requests'] === 3) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(tokens).toMatchObject(expected);
    // gpt-4o*: 176 plain input at 2.5, 1,024 cached at 1.25, 34 output at 10; gpt-4o-mini*: 57 at 0.15, 81 at 0.6.
    expect(tokens['cost_usd']).toBeCloseTo((2 * (176 * 2.5 + 1024 * 1.25 + 34 * 10) + 57 * 0.15 + 81 * 0.6) / 1e6, 9);

    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toContain(`keypool_tokens_total{provider="openai",account="acct-1",direction="input"} ${expected.input_tokens}`);
    expect(metrics).toContain(`keypool_tenant_tokens_total{tenant="acme",direction="output"} ${expected.output_tokens}`);
  }, 60_000);
});
