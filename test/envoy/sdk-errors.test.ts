// keypool's denials as the official SDKs see them, through the REAL Envoy (envoy/envoy.yaml, ports rewritten): the
// openai and anthropic Python SDKs (PyPI) each raise their own exception class for 401/403/429, keypool's message is
// readable, and their retry honours keypool's retry-after. Needs `envoy` and `pip install openai anthropic`
// (CI: .ci/run); skips with a notice without them unless KEYPOOL_REQUIRE_ENVOY=1.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { envoyOrSkip, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import { waitForAsync } from './ext-proc-client.js';
import { MockUpstream } from './mock-upstream.js';

for (const name of ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete process.env[name];

const ENVOY = envoyOrSkip('test/envoy/sdk-errors.test.ts');
const SDKS_PRESENT = spawnSync('python3', ['-c', 'import openai, anthropic'], { stdio: 'ignore' }).status === 0;
if (!SDKS_PRESENT) {
  if (process.env['KEYPOOL_REQUIRE_ENVOY'] === '1') throw new Error('test/envoy/sdk-errors.test.ts: pip install openai anthropic (KEYPOOL_REQUIRE_ENVOY=1)');
  console.warn('[skip] test/envoy/sdk-errors.test.ts: the openai/anthropic Python SDKs are not installed (pip install openai anthropic)');
}
const ACTOR = 'sdk-test';
const SCRIPT = join(import.meta.dirname, 'sdk_errors.py');
/** Each case starts a Python interpreter and imports both SDKs (seconds on a busy 2-core runner). */
const SDK_TEST_MS = 180_000;

interface SdkResult {
  readonly raised: string | null;
  readonly status?: number;
  readonly text?: string;
  readonly body_message?: string | null;
  readonly body_type?: string | null;
  readonly retry_after?: string | null;
  readonly attempts: number;
  readonly elapsed_s?: number;
}

function runSdks(base: string, cases: ReadonlyArray<{ name: string; sdk: 'openai' | 'anthropic'; key: string; max_retries?: number }>): Promise<Record<string, SdkResult>> {
  return new Promise((resolve, reject) => {
    execFile('python3', [SCRIPT, JSON.stringify({ base, cases })], { timeout: SDK_TEST_MS - 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Record<string, SdkResult>);
    });
  });
}

describe.skipIf(!ENVOY || !SDKS_PRESENT)('official SDKs against keypool behind a real Envoy', () => {
  const upstream = new MockUpstream();
  let dataDir: string;
  let keypool: RunningKeypool;
  let envoy: RunningEnvoy;
  const repo = () => keypool.runtime.repository;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-sdk-'));
    const upstreamPort = await upstream.start();
    keypool = await startKeypool({ databaseUrl: 'memory://', dataDir, grpcListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', demoSeed: false, logLevel: 'silent' });
    const port = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
    envoy = await startEnvoy({
      bin: ENVOY as string,
      config: renderEnvoyConfig('envoy/envoy.yaml', { keypoolPort: port, upstreams: { openai: upstreamPort, anthropic: upstreamPort } }),
    });
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await keypool?.stop();
    await upstream.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('401 and 403: each SDK raises its own AuthenticationError / PermissionDeniedError with keypool\'s message', async () => {
    const office = await repo().keys.create({ name: 'office-only', allowedIps: ['10.0.0.0/8'] }, ACTOR);
    await keypool.runtime.snapshots.reload('manual');
    const unknown = `kp_${'x'.repeat(40)}`;
    const results = await runSdks(envoy.baseUrl, [
      { name: 'openai-401', sdk: 'openai', key: unknown },
      { name: 'anthropic-401', sdk: 'anthropic', key: unknown },
      { name: 'openai-403', sdk: 'openai', key: office.plaintextKey },
      { name: 'anthropic-403', sdk: 'anthropic', key: office.plaintextKey },
    ]);
    expect(results['openai-401']).toMatchObject({ raised: 'AuthenticationError', status: 401, body_message: 'Invalid API key.', body_type: 'authentication_error' });
    expect(results['anthropic-401']).toMatchObject({ raised: 'AuthenticationError', status: 401, body_message: 'Invalid API key.', body_type: 'authentication_error' });
    const ipMessage = 'This API key is not allowed from this IP address.';
    expect(results['openai-403']).toMatchObject({ raised: 'PermissionDeniedError', status: 403, body_message: ipMessage });
    expect(results['anthropic-403']).toMatchObject({ raised: 'PermissionDeniedError', status: 403, body_message: ipMessage, body_type: 'permission_error' });
    for (const result of Object.values(results)) {
      expect(result.text).toContain(result.body_message);
      expect(result.attempts).toBe(1); // 401/403 are not retried
    }
  }, SDK_TEST_MS);

  it("429 pool_exhausted: RateLimitError, and the SDK's one retry waited keypool's retry-after", async () => {
    const key = (await repo().keys.create({ name: 'sdk-client' }, ACTOR)).plaintextKey;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    upstream.respond = () => ({ sse: true, first: 'data: {"n":0}\n\n', holdUntil: held, rest: 'data: [DONE]\n\n' });
    const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
    try {
      // Fill both pools: one account each with max_concurrency 1, its slot held by a streaming request.
      for (const [provider, path, headers] of [
        ['openai', '/openai/v1/chat/completions', { authorization: `Bearer ${key}` }],
        ['anthropic', '/anthropic/v1/messages', { 'x-api-key': key }],
      ] as const) {
        await repo().accounts.create({ providerSlug: provider, name: `${provider}-1`, apiKey: `sk-${provider}-secret-1`, maxConcurrency: 1 }, ACTOR);
        await keypool.runtime.snapshots.reload('manual');
        const res = await fetch(`${envoy.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"stream":true}' });
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        await reader.read();
        readers.push(reader);
      }
      await waitForAsync(async () => upstream.received.length === 2, 5_000, 'both slots held');
      const results = await runSdks(envoy.baseUrl, [
        { name: 'openai-429', sdk: 'openai', key, max_retries: 1 },
        { name: 'anthropic-429', sdk: 'anthropic', key, max_retries: 1 },
      ]);
      const message = 'Every upstream credential for this provider is at capacity. Retry later.';
      expect(results['openai-429']).toMatchObject({ raised: 'RateLimitError', status: 429, body_message: message, body_type: 'rate_limit_error', retry_after: '1', attempts: 2 });
      expect(results['anthropic-429']).toMatchObject({ raised: 'RateLimitError', status: 429, body_message: message, body_type: 'rate_limit_error', retry_after: '1', attempts: 2 });
      // retry-after: 1 means the retry came no sooner than ~1 s (the SDKs' own first backoff is ~0.5 s).
      for (const name of ['openai-429', 'anthropic-429']) expect(results[name]!.elapsed_s).toBeGreaterThanOrEqual(0.9);
    } finally {
      release();
      for (const reader of readers) while (!(await reader.read()).done);
    }
  }, SDK_TEST_MS);
});
