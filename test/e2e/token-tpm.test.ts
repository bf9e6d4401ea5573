// Exact TPM end to end: the real Envoy with envoy/envoy-usage.yaml, keypool as `keypool serve` composes it, a mock
// provider reporting 150 tokens of usage per request. An account with tpm_limit 5,000 and requests whose estimate is
// ~2,000 (max_tokens 2,000 in the body keypool asks Envoy for): without reconciliation at most two fit in a minute;
// with it (the usage observer reports each response's usage, the reservation shrinks to 150 where it stands) ten
// requests in a row go through within the minute. Skips with a notice when no Envoy binary is found.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { estimateRequestTokens } from '../../src/core/token-estimate.js';
import { envoyOrSkip, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';

const ENVOY = envoyOrSkip('test/e2e/token-tpm.test.ts');
const ACTOR = 'e2e';
const USAGE = { prompt_tokens: 100, completion_tokens: 50 };
const JSON_BODY = JSON.stringify({ object: 'chat.completion', model: 'gpt-4o-mini', choices: [], usage: USAGE });
const REQUEST_BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 2000, messages: [{ role: 'user', content: 'hello' }] });

describe.skipIf(!ENVOY)('exact TPM through Envoy and keypool serve', () => {
  let upstream: Server;
  let keypool: RunningKeypool;
  let envoy: RunningEnvoy;
  let dataDir: string;
  let clientKey: string;
  let upstreamCalls = 0;

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      req.resume();
      upstreamCalls++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON_BODY);
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-e2e-tpm-'));
    keypool = await startKeypool({ databaseUrl: 'memory://', dataDir, grpcListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', demoSeed: false, logLevel: 'warn' });
    const repo = keypool.runtime.repository;
    await repo.accounts.create({ providerSlug: 'openai', name: 'tpm-5k', apiKey: `sk-${'x'.repeat(40)}`, tpmLimit: 5000 }, ACTOR);
    clientKey = (await repo.keys.create({ name: 'tpm-key' }, ACTOR)).plaintextKey;
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

  async function call(): Promise<number> {
    const res = await fetch(`${envoy.baseUrl}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body: REQUEST_BODY,
    });
    await res.text();
    return res.status;
  }

  it('reconciled reservations let ten ~2,000-token requests through a 5,000 tpm account within a minute', async () => {
    const estimate = estimateRequestTokens(REQUEST_BODY, 1024);
    expect(estimate * 3).toBeGreaterThan(5000);
    const startedAt = Date.now();
    const statuses: number[] = [];
    // Each request is retried until admitted: keypool's health in Envoy first, then an observer still reporting the
    // previous response's usage. Bounded: 100 attempts of 100 ms per request.
    for (let i = 0; i < 10; i++) {
      let status = 0;
      for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
        status = await call();
        statuses.push(status);
        if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(status).toBe(200);
    }
    // All inside one minute: the window never held more than 5,000 reserved tokens, so the reservations must have been
    // reconciled down to the reported 150.
    expect(Date.now() - startedAt).toBeLessThan(55_000);
    expect(upstreamCalls).toBe(10);
    // Refusals, if any, were keypool's 429 (a reservation not reconciled yet) or Envoy's start-up 5xx, nothing else.
    expect(statuses.filter((s) => s !== 200 && s !== 429 && s < 500)).toEqual([]);
  }, 90_000);
});
