// The shipped entry in the real plugin server with the REAL runtime (src/runtime.ts) on an embedded store in a
// temp data dir: the runtime opens lazily on the first request, and its decisions reach Kong.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DECISION_KEY, UNAVAILABLE_RECORD } from '../../src/adapters/kong/codec.js';
import { CLIENT_CREDENTIAL_HEADERS } from '../../src/core/apikey.js';
import { openRuntime } from '../../src/runtime.js';
import { KongRpcClient, runPhase, startInstance, startPluginServer, type PluginServer } from '../helpers/kong-rpc.js';
import { KongRequest } from './kong-request.js';
import { buildPluginTree, type PluginTree } from './plugin-tree.js';

/** The runtime's environment, set explicitly so the caller's DATABASE_URL / REDIS_URL never leak in. */
function runtimeEnv(dataDir: string): NodeJS.ProcessEnv {
  return {
    KEYPOOL_DATA_DIR: dataDir,
    DATABASE_URL: '',
    REDIS_URL: '',
    KEYPOOL_ENCRYPTION_KEYS: '',
    KEYPOOL_KEY_PEPPER: '',
    LOG_LEVEL: 'warn',
  };
}

let tree: PluginTree;
let server: PluginServer;
let rpc: KongRpcClient;
let clientKey: string;
/** Pooled secrets of the accounts added for the providers the demo seed leaves empty. */
const POOLED = { 'azure-openai': 'azure-pooled-secret-0001', gemini: 'gemini-pooled-secret-0001' } as const;

beforeAll(async () => {
  tree = await buildPluginTree('real');
  const dataDir = path.join(tree.root, 'data');
  // Issue a client key into the data dir first (first start also seeds demo openai/anthropic accounts).
  const saved = { ...process.env };
  Object.assign(process.env, runtimeEnv(dataDir));
  try {
    const runtime = await openRuntime({ config: { dataDir, logLevel: 'silent' } });
    try {
      clientKey = (await runtime.repository.keys.create({ name: 'kong-plugin-test' }, 'test')).plaintextKey;
      for (const [providerSlug, apiKey] of Object.entries(POOLED)) {
        await runtime.repository.accounts.create({ providerSlug, name: `${providerSlug}-1`, apiKey }, 'test');
      }
    } finally {
      await runtime.stop();
    }
  } finally {
    for (const name of Object.keys(runtimeEnv(dataDir))) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  }
  server = await startPluginServer({ pluginsDir: tree.pluginsDir, prefix: tree.prefix, env: runtimeEnv(dataDir) });
  rpc = new KongRpcClient(server.socketPath);
}, 120_000);

afterAll(async () => {
  rpc?.close();
  await server?.stop();
  await tree?.remove();
});

async function access(instance: number, headers: Record<string, string>): Promise<KongRequest> {
  const kong = new KongRequest(headers);
  await runPhase(rpc, instance, 'access', kong.answer);
  return kong;
}

test('real runtime: a valid key gets a pooled credential, bad keys get the core denials', async () => {
  const openai = (await startInstance(rpc, 'keypool', { provider: 'openai', strategy: null, key_headers: null })).Id;

  // The first requests may find the runtime still opening (bounded wait, then 503): retry until it answers.
  let first = await access(openai, { authorization: `Bearer ${clientKey}` });
  for (let attempt = 0; attempt < 20 && (first.shared.get(DECISION_KEY) as { code?: string })?.code === 'keypool_unavailable'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    first = await access(openai, { authorization: `Bearer ${clientKey}` });
  }

  expect(first.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { pool: 'openai' } });
  const authorization = first.headers.get('authorization')?.[0];
  expect(authorization).toMatch(/^Bearer sk-demo-not-a-real-key-000[12]$/);
  expect(first.serialize().request.headers['authorization']).toBe('REDACTED');
  first.upstream = { status: 200, headers: { 'x-ratelimit-remaining-requests': '59', 'x-ratelimit-reset-requests': '1s' } };
  expect(await runPhase(rpc, openai, 'log', first.answer)).toEqual([
    'kong.ctx.shared.get',
    'kong.response.get_source',
    'kong.response.get_status',
    'kong.response.get_headers',
  ]);

  const missing = await access(openai, {});
  expect(missing.shared.get(DECISION_KEY)).toMatchObject({ action: 'deny', status: 401, code: 'missing_api_key' });
  const unknown = await access(openai, { authorization: `Bearer kp_${'x'.repeat(40)}` });
  expect(unknown.shared.get(DECISION_KEY)).toMatchObject({ action: 'deny', status: 401, code: 'invalid_api_key' });
}, 120_000);

// Whatever key_headers says (here: x-api-key only), every header a provider reads as a credential is removed before
// the pooled one is set, and neither the client key nor a pooled key appears in kong.log.serialize().
test.each<[string, string, RegExp]>([
  ['openai', 'authorization', /^Bearer sk-demo-not-a-real-key-000[12]$/],
  ['anthropic', 'x-api-key', /^sk-ant-demo-not-a-real-key-0001$/],
  ['azure-openai', 'api-key', new RegExp(`^${POOLED['azure-openai']}$`)],
  ['gemini', 'x-goog-api-key', new RegExp(`^${POOLED.gemini}$`)],
])('real runtime, %s: only the pooled %s reaches the upstream; no credential in serialized logs', async (provider, header, pooled) => {
  const instance = (await startInstance(rpc, 'keypool', { provider, strategy: null, key_headers: ['x-api-key'] })).Id;
  const sent = {
    authorization: `Bearer ${clientKey}`,
    'x-api-key': clientKey,
    'api-key': clientKey,
    'x-goog-api-key': 'AIza-the-clients-own-key',
    'proxy-authorization': 'Basic Y2xpZW50OnNlY3JldA==',
    accept: 'application/json',
  };
  let kong = await access(instance, sent);
  for (let attempt = 0; attempt < 20 && (kong.shared.get(DECISION_KEY) as { code?: string })?.code === 'keypool_unavailable'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    kong = await access(instance, sent);
  }
  expect(kong.shared.get(DECISION_KEY)).toMatchObject({ action: 'allow', ticket: { pool: provider } });
  const upstream = Object.fromEntries(kong.headers);
  const credentials = CLIENT_CREDENTIAL_HEADERS.filter((name) => upstream[name] !== undefined);
  expect(credentials).toEqual([header]);
  expect(upstream[header]?.[0]).toMatch(pooled);
  expect(upstream['accept']).toEqual(['application/json']);
  const serialized = JSON.stringify(kong.serialize());
  expect(serialized).not.toContain(clientKey);
  expect(serialized).not.toContain('AIza-the-clients-own-key');
  expect(serialized).not.toContain(upstream[header]?.[0]);
}, 60_000);

test('no configured store: 503 keypool_unavailable with an error-level log line; no throwaway store in the cwd', async () => {
  const cwd = await mkdtemp(path.join(tmpdir(), 'kp-kong-cwd-'));
  const prefix = await mkdtemp(path.join(tmpdir(), 'kp-kong-prefix-'));
  const bare = await startPluginServer({
    pluginsDir: tree.pluginsDir,
    prefix,
    cwd,
    env: { DATABASE_URL: '', KEYPOOL_DATA_DIR: '', REDIS_URL: '', KEYPOOL_ENCRYPTION_KEYS: '', KEYPOOL_KEY_PEPPER: '', LOG_LEVEL: 'warn' },
  });
  const bareRpc = new KongRpcClient(bare.socketPath);
  try {
    const instance = (await startInstance(bareRpc, 'keypool', { provider: 'openai', strategy: null, key_headers: null })).Id;
    const kong = new KongRequest({ authorization: `Bearer ${clientKey}` });
    await runPhase(bareRpc, instance, 'access', kong.answer);
    expect(kong.shared.get(DECISION_KEY)).toEqual(JSON.parse(JSON.stringify(UNAVAILABLE_RECORD)));
    expect(kong.errors.join('\n')).toMatch(/no configured config store: set DATABASE_URL/);
    expect(existsSync(path.join(cwd, '.keypool'))).toBe(false);
  } finally {
    bareRpc.close();
    await bare.stop();
    await rm(cwd, { recursive: true, force: true });
    await rm(prefix, { recursive: true, force: true });
  }
}, 60_000);
