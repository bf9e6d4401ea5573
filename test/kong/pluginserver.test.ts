// The keypool plugin inside the REAL kong-js-pluginserver (npm kong-pdk), driven over its unix socket with
// Kong's MessagePack-RPC: the dump Kong runs at startup, then whole requests through access and log.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISION_KEY, UNAVAILABLE_RECORD } from '../../src/adapters/kong/codec.js';
import { deny } from '../../src/core/errors.js';
import { extractClientKey } from '../../src/core/apikey.js';
import type { DenyCode } from '../../src/core/types.js';
import {
  KongRpcClient,
  PLUGIN_SERVER_BIN,
  dumpAllPlugins,
  runPhase,
  startInstance,
  startPluginServer,
  type PdkAnswer,
  type PluginServer,
} from '../helpers/kong-rpc.js';
import { TEST_KEYS } from '../helpers/test-engine.js';
import { STATS_KEY, UPSTREAM_SECRETS, type KongTestStats } from './test-runtime.js';

const GOOD = TEST_KEYS.live;
import { KongRequest, type UpstreamAnswer } from './kong-request.js';
import { REPO_ROOT, buildPluginTree, type PluginTree } from './plugin-tree.js';

const SHIPPED_PLUGINS_DIR = path.join(REPO_ROOT, 'kong', 'plugins');
const entry = createRequire(import.meta.url)('../../kong/plugins/keypool.cjs') as { Version: string; Priority: number };

/** PDK calls per phase the README promises. */
const MAX_ACCESS_CALLS = 6;
const MAX_LOG_CALLS = 4;

interface DumpedPlugin {
  Name: string;
  Version: string;
  Priority: number;
  Phases: string[];
  Schema: { name: string; fields: Array<{ config: { type: string; fields: Array<Record<string, unknown>> } }> };
}

describe('the dump Kong runs at startup (--dump-all-plugins)', () => {
  test('the shipped plugins directory holds the keypool entry only', async () => {
    expect(await readdir(SHIPPED_PLUGINS_DIR)).toEqual(['keypool.cjs']);
  });

  test('prints keypool alone as JSON with its schema and phases, and exits by itself', async () => {
    const dump = await dumpAllPlugins(SHIPPED_PLUGINS_DIR);
    expect(dump.signal).toBeNull(); // not killed by the timeout: no handle left open at load
    expect(dump.code).toBe(0);
    expect(dump.stderr).toBe('');
    const plugins = JSON.parse(dump.stdout) as DumpedPlugin[]; // all of stdout: no warning before the JSON
    expect(plugins.map((plugin) => plugin.Name)).toEqual(['keypool']);
    const [keypool] = plugins;
    expect(keypool).toMatchObject({ Name: 'keypool', Version: entry.Version, Priority: entry.Priority });
    expect([...(keypool?.Phases ?? [])].sort()).toEqual(['access', 'log']); // no `response`: it buffers bodies
    const fields = keypool?.Schema.fields[0]?.config.fields.flatMap((field) => Object.keys(field));
    expect(fields).toEqual(['provider', 'strategy', 'key_headers']);
  });

  test('kong/bin/keypool-pluginserver (the kong.conf commands) runs the same dump with the env file loaded', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kp-env-'));
    try {
      const envFile = path.join(dir, 'keypool.env');
      await writeFile(envFile, 'LOG_LEVEL=warn\n');
      const dump = await dumpAllPlugins(SHIPPED_PLUGINS_DIR, {
        command: path.join(REPO_ROOT, 'kong', 'bin', 'keypool-pluginserver'),
        env: { KEYPOOL_ENV_FILE: envFile, KONG_JS_PLUGINSERVER: PLUGIN_SERVER_BIN },
      });
      expect(dump.code).toBe(0);
      expect((JSON.parse(dump.stdout) as DumpedPlugin[]).map((plugin) => plugin.Name)).toEqual(['keypool']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('kong/bin/keypool-pluginserver without its env file fails loudly', () => {
  test.each([
    ['a missing file', (dir: string) => path.join(dir, 'missing.env')],
    ['a directory', (dir: string) => dir],
  ])('%s: non-zero exit, the file named on stderr, no plugin server started', async (_label, envFileIn) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kp-env-'));
    try {
      const envFile = envFileIn(dir);
      const dump = await dumpAllPlugins(SHIPPED_PLUGINS_DIR, {
        command: path.join(REPO_ROOT, 'kong', 'bin', 'keypool-pluginserver'),
        env: { KEYPOOL_ENV_FILE: envFile, KONG_JS_PLUGINSERVER: PLUGIN_SERVER_BIN },
      });
      expect(dump.code).not.toBe(0);
      expect(dump.stderr).toContain(envFile);
      expect(dump.stdout).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('requests through the real plugin server (the real engine over a static snapshot)', () => {
  let tree: PluginTree;
  let server: PluginServer;
  let rpc: KongRpcClient;
  let openai: number;
  let anthropic: number;
  /** Instances on the test snapshot's `busy` pool (cooling down: 429, retry-after 7) and `broken` one (rate state fails). */
  let busy: number;
  let broken: number;

  beforeAll(async () => {
    tree = await buildPluginTree('test');
    server = await startPluginServer({ pluginsDir: tree.pluginsDir, prefix: tree.prefix });
    rpc = new KongRpcClient(server.socketPath);
    openai = (await startInstance(rpc, 'keypool', { provider: 'openai', strategy: null, key_headers: null })).Id;
    anthropic = (
      await startInstance(rpc, 'keypool', { provider: 'anthropic', strategy: 'least-loaded', key_headers: ['x-api-key', 'authorization'] })
    ).Id;
    busy = (await startInstance(rpc, 'keypool', { provider: 'busy', strategy: null, key_headers: null })).Id;
    broken = (await startInstance(rpc, 'keypool', { provider: 'broken', strategy: null, key_headers: null })).Id;
  });

  afterAll(async () => {
    if (process.env['KEYPOOL_SHOW_PLUGINSERVER_LOG']) console.log(server?.output());
    rpc?.close();
    await server?.stop();
    await tree?.remove();
  });

  interface Sent {
    readonly kong: KongRequest;
    readonly record: Record<string, unknown> | undefined;
    readonly access: string[];
    readonly log: string[];
  }

  /** One request as Kong runs it: access; the upstream (or the guard) answers; log. */
  async function send(
    instance: number,
    headers: Record<string, string>,
    options: { ip?: string; upstream?: UpstreamAnswer; answer?: (kong: KongRequest) => (m: string, a: readonly unknown[]) => PdkAnswer } = {},
  ): Promise<Sent> {
    const kong = new KongRequest(headers, options.ip);
    const answer = options.answer?.(kong) ?? kong.answer;
    const access = await runPhase(rpc, instance, 'access', answer);
    const record = kong.shared.get(DECISION_KEY) as Record<string, unknown> | undefined;
    kong.upstream =
      record?.['action'] === 'allow'
        ? (options.upstream ?? { status: 200, headers: { 'x-ratelimit-remaining-requests': '99' } })
        : { status: Number(record?.['status'] ?? 503), headers: {}, source: 'exit' };
    const log = await runPhase(rpc, instance, 'log', answer);
    expect(kong.unknownMethods).toEqual([]);
    return { kong, record, access, log };
  }

  async function stats(): Promise<KongTestStats> {
    const { record } = await send(openai, { 'x-api-key': STATS_KEY });
    const body = JSON.parse(String(record?.['body'])) as { error: { message: string } };
    return JSON.parse(body.error.message) as KongTestStats;
  }

  test('plugin.GetPluginInfo and plugin.StartInstance accept Kong-shaped calls', async () => {
    expect(await rpc.call('plugin.GetPluginInfo', 'keypool')).toMatchObject({ Name: 'keypool', Phases: expect.arrayContaining(['access', 'log']) });
    const started = await startInstance(rpc, 'keypool', { provider: 'openai' });
    expect(started).toMatchObject({ Name: 'keypool', Config: { provider: 'openai', __seq__: 1 } });
  });

  test('openai allow: key swapped upstream, other headers kept, ticket to log, 4 + 4 PDK calls', async () => {
    const sent = await send(openai, { authorization: `Bearer ${GOOD}`, accept: 'text/event-stream' });

    expect(sent.record).toMatchObject({ action: 'allow', ticket: { pool: 'openai', accountId: expect.any(String) } });
    expect(Object.fromEntries(sent.kong.headers)).toEqual({
      authorization: [`Bearer ${UPSTREAM_SECRETS.openai}`],
      accept: ['text/event-stream'],
      'x-keypool-priority': ['5'],
      'x-keypool-tenant': ['acme'],
    });
    expect(sent.kong.serialize().request.headers['authorization']).toBe('REDACTED');
    expect(sent.access).toEqual([
      'kong.request.get_headers',
      'kong.client.get_forwarded_ip',
      'kong.service.request.set_headers',
      'kong.ctx.shared.set',
    ]);
    expect(sent.log).toEqual([
      'kong.ctx.shared.get',
      'kong.response.get_source',
      'kong.response.get_status',
      'kong.response.get_headers',
    ]);
  });

  test('anthropic allow: both client credentials removed, x-api-key injected and redacted, 6 + 4 PDK calls', async () => {
    const sent = await send(anthropic, { 'x-api-key': GOOD, authorization: `Bearer ${GOOD}` });

    expect(Object.fromEntries(sent.kong.headers)).toEqual({
      'x-api-key': [UPSTREAM_SECRETS.anthropic],
      'x-keypool-priority': ['5'],
      'x-keypool-tenant': ['acme'],
    });
    const serialized = sent.kong.serialize();
    expect(serialized.request.headers['x-api-key']).toBe('REDACTED');
    expect(JSON.stringify(serialized)).not.toContain(UPSTREAM_SECRETS.anthropic);
    // The client's x-api-key is hidden before the decision; the injected one then needs no second call.
    expect(sent.access).toEqual([
      'kong.request.get_headers',
      'kong.log.set_serialize_value',
      'kong.client.get_forwarded_ip',
      'kong.service.request.clear_header',
      'kong.service.request.set_headers',
      'kong.ctx.shared.set',
    ]);
    expect(sent.access.length).toBeLessThanOrEqual(MAX_ACCESS_CALLS);
    expect(sent.log.length).toBeLessThanOrEqual(MAX_LOG_CALLS);
  });

  // kong.log.serialize() (http-log, file-log, ...) hides only authorization and proxy-authorization itself.
  describe('no client credential in kong.log.serialize(), whatever the outcome', () => {
    const clientSecrets = { 'api-key': 'azure-client-own-secret', 'x-goog-api-key': 'AIza-client-own-secret' };
    test.each<[string, Record<string, string>, string, 'openai' | 'busy' | 'broken']>([
      ['allow', { 'x-api-key': GOOD, ...clientSecrets }, 'allow', 'openai'],
      ['deny: unknown key', { 'x-api-key': 'kp_nobody', ...clientSecrets }, 'deny', 'openai'],
      ['deny: revoked key', { 'x-api-key': TEST_KEYS.revoked, ...clientSecrets }, 'deny', 'openai'],
      ['deny: pool exhausted', { 'x-api-key': GOOD, ...clientSecrets }, 'deny', 'busy'],
      ['deny: no key in the key headers', { ...clientSecrets }, 'deny', 'openai'],
      ['error: engine failure', { 'x-api-key': GOOD, ...clientSecrets }, 'deny', 'broken'],
    ])('%s', async (_label, headers, action, route) => {
      const sent = await send({ openai, busy, broken }[route], headers);
      expect(sent.record?.['action']).toBe(action);
      const serialized = sent.kong.serialize();
      const text = JSON.stringify(serialized);
      for (const value of Object.values(headers)) expect(text).not.toContain(value);
      for (const name of ['x-api-key', 'api-key', 'x-goog-api-key', 'authorization', 'proxy-authorization']) {
        const logged = serialized.request.headers[name];
        expect(logged === undefined || logged === 'REDACTED', `${name}: ${String(logged)}`).toBe(true);
      }
    });

    test('when the headers cannot even be read, every credential header name is hidden', async () => {
      const sent = await send(openai, { 'x-api-key': GOOD }, {
        answer: (kong) => (method, args) => (method === 'kong.request.get_headers' ? { error: 'boom' } : kong.answer(method, args)),
      });
      expect(sent.record).toEqual(JSON.parse(JSON.stringify(UNAVAILABLE_RECORD)));
      expect(sent.kong.serialize().request.headers).toMatchObject({ 'x-api-key': 'REDACTED', 'api-key': 'REDACTED', 'x-goog-api-key': 'REDACTED' });
    });
  });

  test('headers named like Object.prototype members, from the client and from the provider, are plain data', async () => {
    const before = await stats();
    const sent = await send(openai, { 'x-api-key': GOOD, constructor: 'c', tostring: 't', hasownproperty: 'h' }, {
      upstream: { status: 200, headers: { constructor: 'x', valueof: 'y', 'x-ratelimit-remaining-requests': '9' } },
    });
    expect(sent.record).toMatchObject({ action: 'allow' });
    expect(sent.kong.headers.get('constructor')).toEqual(['c']);
    const after = await stats();
    expect(after.observed).toBe(before.observed + 1);
    expect(after.inFlight).toBe(0);
  });

  // Why kong.yml drops a `__proto__` header in a pre-function before keypool: kong-pdk 0.6.0's MessagePack decoder
  // refuses that map key, and the exception ends the whole plugin server. (If this starts passing a request through,
  // kong-pdk has fixed it and the pre-function can go.) Its own server: this one dies.
  test('kong-pdk itself cannot carry a header named __proto__: its plugin server dies', async () => {
    const prefix = await mkdtemp(path.join(tmpdir(), 'kp-proto-'));
    const doomed = await startPluginServer({ pluginsDir: tree.pluginsDir, prefix });
    const doomedRpc = new KongRpcClient(doomed.socketPath);
    try {
      const instance = (await startInstance(doomedRpc, 'keypool', { provider: 'openai', strategy: null, key_headers: null })).Id;
      // JSON.parse makes `__proto__` an own property (an object literal would set the prototype instead).
      const kong = new KongRequest(JSON.parse(`{"x-api-key":"${GOOD}","__proto__":"p"}`) as Record<string, string>);
      expect(kong.headers.get('__proto__')).toEqual(['p']);
      await runPhase(doomedRpc, instance, 'access', kong.answer).catch(() => undefined);
      expect(kong.shared.get(DECISION_KEY)).toBeUndefined(); // nothing recorded: the Lua guard would answer 503
      await expect(startInstance(new KongRpcClient(doomed.socketPath), 'keypool', { provider: 'openai' })).rejects.toThrow();
    } finally {
      doomedRpc.close();
      await doomed.stop();
      await rm(prefix, { recursive: true, force: true });
    }
  });

  test('the allowlist sees the forwarded client IP Kong reports', async () => {
    expect((await send(openai, { 'x-api-key': TEST_KEYS.office }, { ip: '10.20.30.40' })).record).toMatchObject({ action: 'allow' });
    expect((await send(openai, { 'x-api-key': TEST_KEYS.office }, { ip: '198.51.100.1' })).record).toMatchObject({
      action: 'deny',
      code: 'ip_not_allowed',
    });
  });

  test.each<[string, Record<string, string>, DenyCode, number, Record<string, string>, 'openai' | 'busy' | 'broken']>([
    ['no key', { accept: '*/*' }, 'missing_api_key', 401, {}, 'openai'],
    ['unknown key', { 'x-api-key': 'kp_nobody' }, 'invalid_api_key', 401, {}, 'openai'],
    ['revoked key', { 'x-api-key': TEST_KEYS.revoked }, 'key_revoked', 401, {}, 'openai'],
    ['expired key', { authorization: `Bearer ${TEST_KEYS.expired}` }, 'key_expired', 401, {}, 'openai'],
    ['pool exhausted', { 'x-api-key': GOOD }, 'pool_exhausted', 429, { 'retry-after': '7' }, 'busy'],
    ['engine failure', { 'x-api-key': GOOD }, 'keypool_unavailable', 503, {}, 'broken'],
  ])('deny, %s: recorded for the guard, upstream untouched, 3 (+1 hiding x-api-key) + 1 PDK calls', async (_name, headers, code, status, extra, route) => {
    const sent = await send({ openai, busy, broken }[route], headers);
    expect(sent.record).toEqual({
      action: 'deny',
      status,
      code,
      body: coreDenialBody(code),
      headers: { 'content-type': 'application/json', ...extra },
    });
    expect(Object.fromEntries(sent.kong.headers)).toEqual(Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])));
    // A client credential header Kong would log in clear (x-api-key) is hidden first: one more call.
    const hides = 'x-api-key' in headers ? ['kong.log.set_serialize_value'] : [];
    expect(sent.access.slice(0, 3 + hides.length)).toEqual([
      'kong.request.get_headers',
      ...hides,
      'kong.client.get_forwarded_ip',
      'kong.ctx.shared.set',
    ]);
    expect(sent.access).not.toContain('kong.response.exit');
    expect(sent.log).toEqual(['kong.ctx.shared.get']);
  });

  test('a failing PDK call after the decision records 503 and the slot is released', async () => {
    const before = await stats();
    const sent = await send(openai, { 'x-api-key': GOOD }, {
      answer: (kong) => (method, args) =>
        method === 'kong.service.request.set_headers' ? { error: 'invalid header value' } : kong.answer(method, args),
    });
    expect(sent.record).toEqual(JSON.parse(JSON.stringify(UNAVAILABLE_RECORD)));
    const after = await stats();
    expect(after.allowed).toBe(before.allowed + 1);
    expect(after.inFlight).toBe(0);
  });

  test('a provider 429 is observed, and every allowed slot is released', async () => {
    const before = await stats();
    await send(openai, { 'x-api-key': GOOD }, { upstream: { status: 429, headers: { 'retry-after': '20' } } });
    await send(openai, { 'x-api-key': GOOD }, { upstream: { status: 200, headers: {}, source: 'error' } });
    const after = await stats();
    expect(after.observed).toBe(before.observed + 1); // Kong's own error answer is not the provider's
    expect(after.released).toBe(before.released + 2);
    expect(after.inFlight).toBe(0);
  });

  test('concurrent requests on one server keep their own decisions', async () => {
    const keys = [GOOD, TEST_KEYS.revoked, TEST_KEYS.expired, 'kp_nobody'];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => send(i % 2 ? anthropic : openai, { 'x-api-key': keys[i % keys.length] ?? '' })),
    );
    results.forEach((sent, i) => {
      const key = keys[i % keys.length];
      expect(sent.record?.['action']).toBe(key === GOOD ? 'allow' : 'deny');
    });
    expect((await stats()).inFlight).toBe(0);
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
