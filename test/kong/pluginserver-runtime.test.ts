// The shipped entry in the real plugin server with the REAL runtime (src/runtime.ts) on an embedded store in a
// temp data dir: the runtime opens lazily on the first request, and its decisions reach Kong.
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DECISION_KEY } from '../../src/adapters/kong/codec.js';
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
