// The Kong plugin through kong-pdk's own test harness (PluginTest, Request), over the real engine of
// test/helpers/test-engine.ts (static snapshot, memory rate state; only ports faked).
import { createRequire } from 'node:module';
import { beforeEach, describe, expect, test } from 'vitest';
import { DECISION_KEY, UNAVAILABLE_RECORD, denyRecord } from '../../src/adapters/kong/codec.js';
import { createKongPlugin, type KongPluginOptions } from '../../src/adapters/kong/plugin.js';
import { deny } from '../../src/core/errors.js';
import { extractClientKey } from '../../src/core/apikey.js';
import type { DenyCode } from '../../src/core/types.js';
import { TEST_KEYS, type TestEngine, type TestEngineOptions } from '../helpers/test-engine.js';
import { createKongTestEngine, UPSTREAM_SECRETS } from './test-runtime.js';

const FAKE_KEYS = { good: TEST_KEYS.live, revoked: TEST_KEYS.revoked, expired: TEST_KEYS.expired, office: TEST_KEYS.office } as const;
import { HarnessRequestClass, KeypoolPluginTest, PdkFailure } from './pdk-harness.js';

const entry = createRequire(import.meta.url)('../../kong/plugins/keypool.cjs') as Record<string, unknown>;
/** The TS plugin class (over its own runtime) with the shipped entry's Schema, Version and Priority. */
function pluginWith(options: KongPluginOptions) {
  return { ...entry, Plugin: createKongPlugin(options).Plugin };
}

const KONG_FIELDS = { __plugin_id: '0c5b7e1e-4f1e-4c55-9d6c-2b1d3d8e7a10', __seq__: 1, route_id: 'r-openai' };
const OPENAI = { provider: 'openai', strategy: null, key_headers: null, ...KONG_FIELDS };
const ANTHROPIC = { provider: 'anthropic', key_headers: ['x-api-key', 'authorization'], ...KONG_FIELDS };

let engine: TestEngine;
let plugin: ReturnType<typeof pluginWith>;

async function useEngine(options: TestEngineOptions = {}): Promise<void> {
  engine = await createKongTestEngine(options);
  plugin = pluginWith({ openRuntime: async () => ({ engine, stop: async () => undefined }) });
}

beforeEach(() => useEngine());

/** The n-th lease the engine issued (1-based). */
const leaseNo = (n: number): string => engine.issued[n - 1]?.leaseId ?? `(no lease ${n})`;

function request(headers: Record<string, string>) {
  return new HarnessRequestClass().useURL('http://kong.test/openai/v1/chat/completions').useMethod('POST').useHeaders(headers);
}

describe('access: allow', () => {
  test('openai: provider key injected, keypool headers set, ticket recorded, log observes and releases', async () => {
    const t = new KeypoolPluginTest(request({ authorization: `Bearer ${FAKE_KEYS.good}` }));
    await t.run(plugin, OPENAI);

    // (The harness copies client headers upstream under keys "0", "1"...: only keypool's own are checked.)
    expect(t.upstreamHeaders()).toMatchObject({
      authorization: `Bearer ${UPSTREAM_SECRETS.openai}`,
      'x-keypool-priority': '5',
      'x-keypool-tenant': 'acme',
    });
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { pool: 'openai', leaseId: leaseNo(1) } });
    expect(t.serializeValues.size).toBe(0); // Kong's serializer hides authorization itself
    expect(engine.views[0]).toMatchObject({ provider: 'openai', clientAddress: '1.2.3.4', keyHeaders: undefined });
    expect(t.calls).toEqual([
      'kong.request.get_headers',
      'kong.client.get_forwarded_ip',
      'kong.service.request.set_headers',
      'kong.ctx.shared.set',
      // log
      'kong.ctx.shared.get',
      'kong.response.get_source',
      'kong.response.get_status',
      'kong.response.get_headers',
    ]);
    expect(engine.observed).toHaveLength(1);
    expect(engine.observed[0]).toMatchObject({ status: 200, ticket: { leaseId: leaseNo(1) } });
    expect(engine.stats).toMatchObject({ allowed: 1, released: 1, inFlight: 0 });
    // Kong keeps header-derived figures only: no body call above (a response phase would buffer every body), so no
    // token usage is ever recorded through Kong (README "Tokens and usage accounting").
    expect(engine.usage).toEqual([]);
  });

  test('anthropic: every client credential is removed, x-api-key injected and redacted in serialized logs', async () => {
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good, authorization: `Bearer ${FAKE_KEYS.good}` }));
    const instance = KeypoolPluginTest.instance(plugin, ANTHROPIC);
    await t.phase(instance, 'access');

    const upstream = t.upstreamHeaders();
    expect(upstream['x-api-key']).toBe(UPSTREAM_SECRETS.anthropic);
    expect(upstream['authorization']).toBeUndefined();
    expect(t.serializeValues.get('request.headers.x-api-key')).toBe('REDACTED');
    expect(engine.views[0]?.keyHeaders).toEqual(['x-api-key', 'authorization']);
    // The client's x-api-key is hidden right after the headers are read; the injected one needs no second call.
    expect(t.calls).toEqual([
      'kong.request.get_headers',
      'kong.log.set_serialize_value',
      'kong.client.get_forwarded_ip',
      'kong.service.request.clear_header',
      'kong.service.request.set_headers',
      'kong.ctx.shared.set',
    ]);
  });

  test('IP allowlist: the key passes from the forwarded client IP Kong trusts', async () => {
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.office }), {
      'kong.client.get_forwarded_ip': () => '10.1.2.3',
    });
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow' });
    expect(engine.views[0]?.clientAddress).toBe('10.1.2.3');
  });
});

describe('access: each denial is recorded, never answered from JS', () => {
  test.each<[string, Record<string, string>, DenyCode, number, Record<string, string>]>([
    ['no key', {}, 'missing_api_key', 401, {}],
    ['unknown key', { 'x-api-key': 'kp_nobody' }, 'invalid_api_key', 401, {}],
    ['revoked key', { 'x-api-key': FAKE_KEYS.revoked }, 'key_revoked', 401, {}],
    ['expired key', { authorization: `Bearer ${FAKE_KEYS.expired}` }, 'key_expired', 401, {}],
    ['key used from outside its allowlist', { 'x-api-key': FAKE_KEYS.office }, 'ip_not_allowed', 403, {}],
    // The openai pool cooling down (real 429s with retry-after: 7), and its rate state failing.
    ['pool exhausted', { 'x-api-key': FAKE_KEYS.good }, 'pool_exhausted', 429, { 'retry-after': '7' }],
    ['engine failure', { 'x-api-key': FAKE_KEYS.good }, 'keypool_unavailable', 503, {}],
  ])('%s', async (_name, headers, code, status, extraHeaders) => {
    if (code === 'pool_exhausted') await engine.coolDown('openai', 7);
    if (code === 'keypool_unavailable') engine.failAdmissions = true;
    const t = new KeypoolPluginTest(request(headers));
    await t.run(plugin, OPENAI);

    const recorded = t.shared.get(DECISION_KEY);
    expect(recorded).toEqual({
      action: 'deny',
      status,
      code,
      body: coreDenialBody(code),
      headers: { 'content-type': 'application/json', ...extraHeaders },
    });
    // A client x-api-key (Kong logs it in clear) is hidden on denials too.
    const hides = 'x-api-key' in headers ? ['kong.log.set_serialize_value'] : [];
    expect(t.calls.slice(0, 3 + hides.length)).toEqual(['kong.request.get_headers', ...hides, 'kong.client.get_forwarded_ip', 'kong.ctx.shared.set']);
    if (hides.length > 0) expect(t.serializeValues.get('request.headers.x-api-key')).toBe('REDACTED');
    expect(t.calls).not.toContain('kong.response.exit');
    expect(t.calls).not.toContain('kong.service.request.set_headers');
    // log phase: one call, nothing to observe
    expect(t.calls.at(-1)).toBe('kong.ctx.shared.get');
    expect(engine.stats.observed).toBe(0);
  });
});

describe('log', () => {
  test('a provider 429 with its rate-limit headers reaches observe(); the slot is released', async () => {
    const t = new KeypoolPluginTest(request({ authorization: `Bearer ${FAKE_KEYS.good}` }));
    const instance = KeypoolPluginTest.instance(plugin, OPENAI);
    await t.phase(instance, 'access');
    t.test.response.status = 429;
    t.test.response.headers.set('retry-after', '20');
    t.test.response.headers.set('x-ratelimit-remaining-requests', '0');
    const before = t.calls.length;
    await t.phase(instance, 'log');

    expect(t.callsSince(before)).toEqual([
      'kong.ctx.shared.get',
      'kong.response.get_source',
      'kong.response.get_status',
      'kong.response.get_headers',
    ]);
    expect(engine.observed[0]).toMatchObject({
      status: 429,
      headers: { 'retry-after': '20', 'x-ratelimit-remaining-requests': '0' },
      ticket: { accountId: engine.issued[0]?.accountId },
    });
    expect(engine.stats).toMatchObject({ released: 1, inFlight: 0 });
  });

  test('between access and log the slot is renewed every renewIntervalMs; log stops it', async () => {
    await useEngine({ leaseMs: 90 }); // renewed every 30 ms
    const t = new KeypoolPluginTest(request({ authorization: `Bearer ${FAKE_KEYS.good}` }));
    const instance = KeypoolPluginTest.instance(plugin, OPENAI);
    await t.phase(instance, 'access');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(engine.renewed.length).toBeGreaterThanOrEqual(2);
    expect(new Set(engine.renewed.map((ticket) => ticket.leaseId))).toEqual(new Set([leaseNo(1)]));
    t.test.response.status = 200;
    await t.phase(instance, 'log');
    const atLog = engine.renewed.length;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(engine.renewed.length).toBe(atLog);
    expect(engine.stats).toMatchObject({ released: 1, inFlight: 0 });
  });

  test("another plugin's answer is not the provider's: release only", async () => {
    const t = new KeypoolPluginTest(request({ authorization: `Bearer ${FAKE_KEYS.good}` }), {
      'kong.response.get_source': () => 'exit',
    });
    await t.run(plugin, OPENAI);
    expect(engine.stats).toMatchObject({ observed: 0, released: 1, inFlight: 0 });
  });
});

describe('fail closed', () => {
  test('an invalid config records 503 and says why', async () => {
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good }));
    await t.phase(KeypoolPluginTest.instance(plugin, { strategy: 'priority', ...KONG_FIELDS }), 'access');
    expect(t.shared.get(DECISION_KEY)).toEqual(UNAVAILABLE_RECORD);
    expect(t.errors.join('\n')).toMatch(/config.provider is required/);
    expect(engine.stats.decided).toBe(0);
  });

  test('a decision past the deadline records 503, and its late allow is released', async () => {
    const hurried = pluginWith({ openRuntime: async () => ({ engine, stop: async () => undefined }), decideDeadlineMs: 50 });
    engine.decideDelayMs = 300;
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good }));
    await t.phase(KeypoolPluginTest.instance(hurried, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toEqual(UNAVAILABLE_RECORD);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(engine.stats).toMatchObject({ allowed: 1, released: 1, inFlight: 0 });
  });

  test('a decision waiting in the admission queue gets its wait on top of the deadline: allowed, not 503', async () => {
    const hurried = pluginWith({ openRuntime: async () => ({ engine, stop: async () => undefined }), decideDeadlineMs: 50 });
    engine.queuedForMs = 1_000;
    engine.decideDelayMs = 300;
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good }));
    await t.phase(KeypoolPluginTest.instance(hurried, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow' });
    expect(engine.stats).toMatchObject({ allowed: 1, released: 0, inFlight: 1 });
  });

  test('a PDK failure after the decision records 503 and releases the slot', async () => {
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good }), {
      'kong.service.request.set_headers': () => new PdkFailure('invalid header value'),
    });
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toEqual(UNAVAILABLE_RECORD);
    expect(engine.stats).toMatchObject({ allowed: 1, released: 1, inFlight: 0 });
  });

  test('when nothing can be recorded, nothing is: the Lua guard answers 503', async () => {
    const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.revoked }), {
      'kong.ctx.shared.set': () => new PdkFailure('no ctx'),
    });
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.shared.has(DECISION_KEY)).toBe(false);
  });

  test('a runtime that fails to open: 503, then fail fast without reopening on every request', async () => {
    let opens = 0;
    const broken = pluginWith({
      openRuntime: async () => {
        opens += 1;
        throw new Error('DATABASE_URL unreachable');
      },
    });
    const instance = KeypoolPluginTest.instance(broken, OPENAI);
    for (let i = 0; i < 3; i++) {
      const t = new KeypoolPluginTest(request({ 'x-api-key': FAKE_KEYS.good }));
      await t.phase(instance, 'access');
      expect(t.shared.get(DECISION_KEY)).toEqual(denyRecord(deny('keypool_unavailable')));
    }
    expect(opens).toBe(1);
  });
});

/**
 * The body core sends for a denial: its default, except that a missing key is answered naming the key headers the
 * engine looked in (extractClientKey's message for the default authorization, x-api-key).
 */
function coreDenialBody(code: DenyCode): string {
  const missing = extractClientKey({}, ['authorization', 'x-api-key']);
  if (code === 'missing_api_key' && !missing.ok) return deny(code, { message: missing.message }).body;
  return deny(code).body;
}

describe('access: pools whose decisions read the path ask Kong for it (get_path_with_query, only there)', () => {
  const POOLS = { pools: { gemini: ['AIza-upstream-gemini'], 'azure-openai': ['az-upstream-key'], openai: ['sk-upstream-openai'] } };
  const route = (provider: string) => ({ ...OPENAI, provider });

  test('Gemini: a key in the query is refused 400 and never forwarded; without one the request is allowed', async () => {
    await useEngine(POOLS);
    const withKey = new KeypoolPluginTest(
      new HarnessRequestClass().useURL('http://kong.test/gemini/v1beta/models/gemini-pro:generateContent?key=AIza-clients-own').useMethod('POST').useHeaders({ 'x-goog-api-key': FAKE_KEYS.good }),
    );
    await withKey.phase(KeypoolPluginTest.instance(plugin, { ...route('gemini'), key_headers: ['x-goog-api-key'] }), 'access');
    expect(withKey.shared.get(DECISION_KEY)).toMatchObject({ action: 'deny', status: 400, code: 'invalid_request' });
    expect(withKey.calls).toContain('kong.request.get_path_with_query');

    const plain = new KeypoolPluginTest(
      new HarnessRequestClass().useURL('http://kong.test/gemini/v1beta/models/gemini-pro:streamGenerateContent?alt=sse').useMethod('POST').useHeaders({ 'x-goog-api-key': FAKE_KEYS.good }),
    );
    await plain.phase(KeypoolPluginTest.instance(plugin, { ...route('gemini'), key_headers: ['x-goog-api-key'] }), 'access');
    expect(plain.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow' });
  });

  test('Azure: the deployment in the path is the model (per-model state), as under Envoy, without reading the body', async () => {
    await useEngine(POOLS);
    const t = new KeypoolPluginTest(
      new HarnessRequestClass().useURL('http://kong.test/azure/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-06-01').useMethod('POST').useHeaders({ 'api-key': FAKE_KEYS.good }),
    );
    await t.phase(KeypoolPluginTest.instance(plugin, { ...route('azure-openai'), key_headers: ['api-key'] }), 'access');
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { model: 'gpt-4o-prod' } });
    expect(t.calls).toContain('kong.request.get_path_with_query');
    expect(t.calls).not.toContain('kong.request.get_raw_body');
  });

  test('an OpenAI pool without model restrictions asks for neither', async () => {
    await useEngine(POOLS);
    const t = new KeypoolPluginTest(new HarnessRequestClass().useURL('http://kong.test/openai/v1/chat/completions?key=x').useMethod('POST').useHeaders({ authorization: `Bearer ${FAKE_KEYS.good}` }));
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow' });
    expect(t.calls).not.toContain('kong.request.get_path_with_query');
  });
});

describe('access: pools that route by model read the body (one or two more PDK calls, only there)', () => {
  const MODELS = { accountModels: { 'openai-a': ['gpt-4o*'], 'openai-b': ['o1'] } };

  function chatRequest() {
    return new HarnessRequestClass().useURL('http://kong.test/openai/v1/chat/completions').useMethod('POST').useHeaders({ authorization: `Bearer ${FAKE_KEYS.good}` });
  }

  test('the model in the body picks the account that serves it', async () => {
    await useEngine(MODELS);
    for (const [model, account] of [['o1', 'openai-b'], ['gpt-4o-mini', 'openai-a']] as const) {
      const t = new KeypoolPluginTest(chatRequest(), { 'kong.request.get_raw_body': () => JSON.stringify({ model }) });
      const instance = KeypoolPluginTest.instance(plugin, OPENAI);
      await t.phase(instance, 'access');
      expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { accountName: account, model } });
      expect(t.calls.slice(0, 4)).toEqual(['kong.request.get_headers', 'kong.client.get_forwarded_ip', 'kong.request.get_path_with_query', 'kong.request.get_raw_body']);
    }
  });

  test('a model nobody serves, a body that is not JSON, a body Kong could not keep in memory: recorded 400s', async () => {
    await useEngine(MODELS);
    for (const [raw, code] of [
      [JSON.stringify({ model: 'gpt-5' }), 'model_not_available'],
      ['not json', 'invalid_request'],
    ] as const) {
      const t = new KeypoolPluginTest(chatRequest(), { 'kong.request.get_raw_body': () => raw });
      await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
      expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'deny', status: 400, code });
    }
    const tooLarge = new KeypoolPluginTest(chatRequest(), {
      'kong.request.get_raw_body': () => new PdkFailure('request body did not fit into client body buffer'),
    });
    await tooLarge.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(tooLarge.shared.get(DECISION_KEY)).toMatchObject({ action: 'deny', status: 400, code: 'invalid_request' });
  });

  test('a request without a body (Kong reads it as empty) names no model: any account serves it', async () => {
    await useEngine(MODELS);
    const t = new KeypoolPluginTest(chatRequest(), { 'kong.request.get_raw_body': () => '' });
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { model: null } });
  });

  test('a pool without model restrictions never reads the path or the body', async () => {
    const t = new KeypoolPluginTest(chatRequest(), { 'kong.request.get_raw_body': () => '{"model":"o1"}' });
    await t.phase(KeypoolPluginTest.instance(plugin, OPENAI), 'access');
    expect(t.calls).not.toContain('kong.request.get_raw_body');
    expect(t.calls).not.toContain('kong.request.get_path_with_query');
  });
});
