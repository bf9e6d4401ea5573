// Waiting in the admission queue through the REAL Envoy (envoy/envoy.yaml as shipped: message_timeout 0.5 s,
// max_message_timeout 31 s) and the REAL keypool (`startKeypool`, in-memory store and rate state): a request that
// waits for an account longer than message_timeout survives its wait (keypool's override_message_timeout), and a
// waiting request whose client goes away leaves the queue without taking the slot. A control run of the same config
// without max_message_timeout shows Envoy 1.40 then ignores the override and answers 504.
// Skips with a notice without an Envoy binary unless KEYPOOL_REQUIRE_ENVOY=1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { envoyOrSkip, envoyStat, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import { waitForAsync } from './ext-proc-client.js';
import { MockUpstream, type ReceivedRequest, type Reply } from './mock-upstream.js';

for (const name of ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete process.env[name];

const ENVOY = envoyOrSkip('test/envoy/queue-real.test.ts');
const CHAT = '/openai/v1/chat/completions';
const ACTOR = 'queue-e2e';
/** Longer than the shipped message_timeout (0.5 s): the queued request must outlive it. */
const HOLD_MS = 1_500;

const okReply: Reply = { status: 200, headers: { 'content-type': 'application/json' }, body: '{"object":"chat.completion","choices":[]}' };

/** envoy.yaml as rendered for tests, with max_message_timeout removed from every ext_proc filter. */
function withoutMaxMessageTimeout(rendered: string): string {
  const config = parse(rendered) as unknown;
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(strip);
    else if (node !== null && typeof node === 'object') {
      delete (node as Record<string, unknown>)['max_message_timeout'];
      Object.values(node).forEach(strip);
    }
  };
  strip(config);
  return stringify(config);
}

describe.skipIf(!ENVOY)('the admission queue through a real Envoy', () => {
  const upstream = new MockUpstream();
  let dataDir: string;
  let keypool: RunningKeypool;
  let envoy: RunningEnvoy;
  let control: RunningEnvoy;
  let clientKey: string;
  let accountId: string;

  const repo = () => keypool.runtime.repository;
  const post = (base: string, body: string, signal?: AbortSignal): Promise<Response> =>
    fetch(`${base}${CHAT}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` },
      body,
      ...(signal ? { signal } : {}),
    });
  const stat = (target: RunningEnvoy, name: string) => envoyStat(target.adminUrl, `http.llm_gateway.ext_proc.keypool.${name}`);
  const inFlight = async (): Promise<number> => (await keypool.runtime.state.inspect('openai', [accountId], Date.now()))[0]!.inFlight;
  async function queueResults(outcome: string): Promise<number> {
    const metric = await keypool.metrics.registry.getSingleMetric('keypool_queue_results_total')!.get();
    return metric.values.filter((v) => v.labels['outcome'] === outcome).reduce((n, v) => n + v.value, 0);
  }

  /** A first request takes the only slot (its upstream answer waits for `release`); resolves once it is upstream. */
  async function holdTheSlot(base: string): Promise<{ release: () => void; response: Promise<Response> }> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    upstream.respond = (request: ReceivedRequest): Reply =>
      request.body.includes('"hold":true') ? { sse: true, first: 'data: {"n":0}\n\n', holdUntil: held, rest: 'data: [DONE]\n\n' } : okReply;
    const response = post(base, '{"model":"m","stream":true,"hold":true}');
    await waitForAsync(async () => (await inFlight()) === 1, 5_000, 'the first request holds the slot');
    return { release, response };
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-queue-e2e-'));
    const upstreamPort = await upstream.start();
    keypool = await startKeypool({
      databaseUrl: 'memory://',
      dataDir,
      grpcListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      demoSeed: false,
      logLevel: process.env['KEYPOOL_TEST_LOG'] ?? 'silent',
    });
    const port = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
    const rendered = renderEnvoyConfig('envoy/envoy.yaml', { keypoolPort: port, upstreams: { openai: upstreamPort, anthropic: upstreamPort } });
    [envoy, control] = await Promise.all([
      startEnvoy({ bin: ENVOY as string, config: rendered }),
      startEnvoy({ bin: ENVOY as string, config: withoutMaxMessageTimeout(rendered) }),
    ]);
    accountId = (await repo().accounts.create({ providerSlug: 'openai', name: 'only', apiKey: 'sk-openai-only-0123456789', maxConcurrency: 1 }, ACTOR)).id;
    clientKey = (await repo().keys.create({ name: 'client' }, ACTOR)).plaintextKey;
    await repo().settings.set('queue.max_wait_ms', 10_000, ACTOR);
    await keypool.runtime.snapshots.reload('manual');
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await control?.stop();
    await keypool?.stop();
    await upstream.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('a request queued longer than message_timeout survives its wait and is served once the slot frees', async () => {
    const timeoutsBefore = await stat(envoy, 'message_timeouts');
    const first = await holdTheSlot(envoy.baseUrl);
    const queued = post(envoy.baseUrl, '{"model":"m"}');
    await waitForAsync(async () => (await keypool.metrics.registry.getSingleMetric('keypool_queue_waiting')!.get()).values.some((v) => v.value === 1), 5_000, 'the second request waits in the queue');
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS)); // the slot stays taken past message_timeout
    expect(upstream.received).toHaveLength(1); // still waiting: only the first request went upstream
    first.release();
    const firstResponse = await first.response;
    await firstResponse.text();
    const second = await queued;
    expect(second.status).toBe(200);
    expect(await second.json()).toMatchObject({ object: 'chat.completion' });
    expect(upstream.received).toHaveLength(2);
    expect(await stat(envoy, 'message_timeouts')).toBe(timeoutsBefore);
    expect(await queueResults('admitted')).toBe(1);
    await waitForAsync(async () => (await inFlight()) === 0, 5_000, 'every slot released');
  });

  it('a queued request whose client goes away leaves the queue at once and never takes the slot', async () => {
    upstream.reset();
    const first = await holdTheSlot(envoy.baseUrl);
    const gone = new AbortController();
    const abandoned = post(envoy.baseUrl, '{"model":"m"}', gone.signal).catch((error: unknown) => error);
    await waitForAsync(async () => (await keypool.metrics.registry.getSingleMetric('keypool_queue_waiting')!.get()).values.some((v) => v.value === 1), 5_000, 'the request waits in the queue');
    gone.abort(); // the client hangs up: Envoy resets the ext_proc stream
    await abandoned;
    await waitForAsync(async () => (await queueResults('cancelled')) === 1, 5_000, 'the wait ended as cancelled');
    first.release();
    await (await first.response).text();
    await waitForAsync(async () => (await inFlight()) === 0, 5_000, 'the slot is free, not taken by the abandoned request');
    expect(upstream.received).toHaveLength(1);
  });

  it('control: without max_message_timeout, Envoy ignores the override and the queued request gets 504 at message_timeout', async () => {
    upstream.reset();
    const timeoutsBefore = await stat(control, 'message_timeouts');
    const first = await holdTheSlot(control.baseUrl);
    const queued = await post(control.baseUrl, '{"model":"m"}');
    expect(queued.status).toBe(504);
    await queued.text();
    expect(await stat(control, 'message_timeouts')).toBe(timeoutsBefore + 1);
    first.release();
    await (await first.response).text();
    await waitForAsync(async () => (await inFlight()) === 0, 5_000, 'every slot released');
    expect(upstream.received).toHaveLength(1);
  });
});
