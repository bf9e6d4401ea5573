// 100,000 denied and 100,000 allowed requests through the real plugin server: its memory must stay bounded.
// (kong.response.exit from JS leaks one event per call in kong-pdk 0.6.0: a server answering denials that way
// dies after ~37,000 of them on a 96 MB heap. keypool records denials instead; this proves it on the same heap.)
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DECISION_KEY } from '../../src/adapters/kong/codec.js';
import { KongRpcClient, runPhase, startInstance, startPluginServer, type PluginServer } from '../helpers/kong-rpc.js';
import { TEST_KEYS } from '../helpers/test-engine.js';
import { STATS_KEY, type KongTestStats } from './test-runtime.js';
import { KongRequest } from './kong-request.js';
import { buildPluginTree, type PluginTree } from './plugin-tree.js';

const DENIED = Number(process.env['KEYPOOL_SOAK_DENIED'] ?? 100_000);
const ALLOWED = Number(process.env['KEYPOOL_SOAK_ALLOWED'] ?? 100_000);
const WARM_UP = 5_000;
/** Kong workers run many requests at once; each concurrent request holds its own connection. */
const CONCURRENCY = 16;
const HEAP_MB = 96;
/** Growth allowed between the warmed-up server and the end of the soak. */
const MAX_RSS_GROWTH_KB = 40 * 1024;

let tree: PluginTree;
let server: PluginServer;
let rpc: KongRpcClient;
let instance: number;

beforeAll(async () => {
  tree = await buildPluginTree('test');
  server = await startPluginServer({
    pluginsDir: tree.pluginsDir,
    prefix: tree.prefix,
    env: { NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` },
  });
  rpc = new KongRpcClient(server.socketPath);
  instance = (await startInstance(rpc, 'keypool', { provider: 'openai' })).Id;
});

afterAll(async () => {
  rpc?.close();
  await server?.stop();
  await tree?.remove();
});

async function request(key: string): Promise<string> {
  const kong = new KongRequest({ 'x-api-key': key, 'content-type': 'application/json' });
  await runPhase(rpc, instance, 'access', kong.answer);
  const record = kong.shared.get(DECISION_KEY) as { action?: string } | undefined;
  kong.upstream = { status: 200, headers: { 'x-ratelimit-remaining-requests': '499' } };
  await runPhase(rpc, instance, 'log', kong.answer);
  return record?.action ?? 'none';
}

/** Runs `total` requests, `CONCURRENCY` at a time; even indexes denied, odd allowed (until each quota is met). */
async function drive(denied: number, allowed: number, onProgress?: (done: number) => void): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  let deniedLeft = denied;
  let allowedLeft = allowed;
  let done = 0;
  const next = (): string | null => {
    const deny = deniedLeft > 0 && (done % 2 === 0 || allowedLeft === 0);
    if (deny) deniedLeft -= 1;
    else if (allowedLeft > 0) allowedLeft -= 1;
    else return null;
    return deny ? TEST_KEYS.revoked : TEST_KEYS.live;
  };
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let key = next(); key !== null; key = next()) {
        const outcome = await request(key);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        done += 1;
        if (done % 20_000 === 0) onProgress?.(done);
      }
    }),
  );
  return outcomes;
}

test(
  `${DENIED} denied + ${ALLOWED} allowed requests: plugin server RSS stays bounded on a ${HEAP_MB} MB heap`,
  async () => {
    const rssBeforeKb = server.rssKb();
    await drive(WARM_UP / 2, WARM_UP / 2);
    const rssStartKb = server.rssKb();
    let rssMaxKb = rssStartKb;
    const startedAt = Date.now();

    const outcomes = await drive(DENIED, ALLOWED, () => (rssMaxKb = Math.max(rssMaxKb, server.rssKb())));

    const elapsedS = (Date.now() - startedAt) / 1000;
    const rssEndKb = server.rssKb();
    rssMaxKb = Math.max(rssMaxKb, rssEndKb);
    const mib = (kb: number): string => (kb / 1024).toFixed(1);
    console.log(
      `[kong soak] ${DENIED + ALLOWED} requests in ${elapsedS.toFixed(1)} s ` +
        `(${Math.round((DENIED + ALLOWED) / elapsedS)}/s, concurrency ${CONCURRENCY}); plugin server RSS: ` +
        `fresh ${mib(rssBeforeKb)} MiB, start (warmed) ${mib(rssStartKb)} MiB, max ${mib(rssMaxKb)} MiB, end ${mib(rssEndKb)} MiB`,
    );

    expect(outcomes).toEqual({ deny: DENIED, allow: ALLOWED });
    expect(rssEndKb - rssStartKb).toBeLessThan(MAX_RSS_GROWTH_KB);
    const kong = new KongRequest({ 'x-api-key': STATS_KEY });
    await runPhase(rpc, instance, 'access', kong.answer);
    const body = JSON.parse(String((kong.shared.get(DECISION_KEY) as { body: string }).body)) as { error: { message: string } };
    const stats = JSON.parse(body.error.message) as KongTestStats;
    expect(stats).toMatchObject({ allowed: ALLOWED + WARM_UP / 2, inFlight: 0 });
    expect(rpc.connections).toBeLessThanOrEqual(CONCURRENCY);
  },
  600_000,
);
