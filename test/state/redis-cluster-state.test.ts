// The Redis store on a real local Redis Cluster (3 masters + 3 replicas, test/helpers/redis-cluster.ts), reached the
// way keypool reaches it from REDIS_URL=redis+cluster://...: the shared contract, atomic admission across
// connections, every key of a pool on one slot, and ACL users (user and password in the URL).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { createRedisClient } from '../../src/stores/redis-connection.js';
import { REDIS_CLIENT_DEFAULTS, RedisRateStateStore } from '../../src/stores/redis-state.js';
import { LocalRedisCluster, redisClusterToolsAvailable } from '../helpers/redis-cluster.js';
import { cand, rateStateContract } from './rate-state.contract.js';
import { quotaStateContract } from './quota-state.contract.js';
import { tokenStateContract } from './token-state.contract.js';
import { uniquePrefix } from './services.js';

const available = redisClusterToolsAvailable('redis cluster state');
const prefix = uniquePrefix();

describe.skipIf(!available)('redis cluster', () => {
  let cluster: LocalRedisCluster;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await LocalRedisCluster.start();
    client = createRedisClient(cluster.url(), REDIS_CLIENT_DEFAULTS) as Cluster;
    await new RedisRateStateStore(client, { keyPrefix: prefix }).ready(10_000);
  }, 60_000);

  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  rateStateContract('redis cluster', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });
  quotaStateContract('redis cluster', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });
  tokenStateContract('redis cluster', {
    create: async (options) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true, ...options }),
  });

  const request = (pool: string, candidates: ReturnType<typeof cand>[]) => ({ pool, candidates, leastLoaded: false, nowMs: Date.now(), leaseMs: 60_000 });

  it('is a Cluster client, and pools land on different masters while each pool keeps one slot', async () => {
    expect(client).toBeInstanceOf(Cluster);
    const store = new RedisRateStateStore(client, { keyPrefix: prefix });
    const pools = ['openai', 'anthropic', 'gemini', 'openrouter', 'azure-openai', 'openai-compatible'];
    const owners = new Set<number>();
    for (const pool of pools) {
      const keys = store.keysOf(pool, 'acc-1');
      const slots = new Set(await Promise.all(keys.map((key) => client.cluster('KEYSLOT', key))));
      expect(slots.size).toBe(1);
      owners.add(await cluster.masterOf(`kp:${pool}`));
      expect((await store.admit(request(pool, [cand('acc-1', { rpmLimit: 10, maxConcurrency: 2 })]))).ok).toBe(true);
    }
    // The six seeded providers spread over more than one shard (the test would prove little otherwise).
    expect(owners.size).toBeGreaterThan(1);
  });

  it('admits exactly rpmLimit and maxConcurrency across three cluster connections (atomic script on the slot owner)', async () => {
    const replicas = await Promise.all(
      [0, 1, 2].map(async () => {
        const store = new RedisRateStateStore(createRedisClient(cluster.url(), REDIS_CLIENT_DEFAULTS), { keyPrefix: prefix }, true);
        await store.ready(10_000);
        return store;
      }),
    );
    try {
      const c = [cand('a', { rpmLimit: 60, maxConcurrency: 1_000 }), cand('b', { rpmLimit: 60, maxConcurrency: 1_000 })];
      const results = await Promise.all(replicas.flatMap((store) => Array.from({ length: 100 }, () => store.admit(request('atomic', c)))));
      const byAccount = new Map<string, number>();
      for (const r of results) if (r.ok) byAccount.set(r.accountId, (byAccount.get(r.accountId) ?? 0) + 1);
      expect(Object.fromEntries(byAccount)).toEqual({ a: 60, b: 60 });
      const busy = [cand('c', { maxConcurrency: 5 })];
      const held = await Promise.all(replicas.flatMap((store) => Array.from({ length: 50 }, () => store.admit(request('atomic', busy)))));
      expect(held.filter((r) => r.ok).length).toBe(5);
      expect((await replicas[0]!.inspect('atomic', ['c'], Date.now()))[0]!.inFlight).toBe(5);
    } finally {
      await Promise.all(replicas.map((s) => s.close()));
    }
  });

  it('connects as an ACL user given in the URL, and a wrong password never reaches the data', async () => {
    await cluster.onEveryNode(['ACL', 'SETUSER', 'keypool', 'on', '>s3cret%@', '~*', '+@all']);
    const good = RedisRateStateStore.connect(cluster.url('keypool:s3cret%25%40'), { keyPrefix: prefix });
    try {
      await good.ready(10_000);
      expect((await good.admit(request('acl', [cand('a')]))).ok).toBe(true);
      const whoami = createRedisClient(cluster.url('keypool:s3cret%25%40'), REDIS_CLIENT_DEFAULTS) as Cluster;
      try {
        await new RedisRateStateStore(whoami, {}).ready(10_000);
        expect(await whoami.call('ACL', 'WHOAMI')).toBe('keypool');
      } finally {
        whoami.disconnect();
      }
    } finally {
      await good.close();
    }
    const bad = RedisRateStateStore.connect(cluster.url('keypool:wrong'), { keyPrefix: prefix }, { connectTimeout: 1_000 });
    try {
      await expect(bad.ready(3_000)).rejects.toThrow();
      await expect(bad.admit(request('acl', [cand('a')]))).rejects.toThrow();
    } finally {
      await bad.close();
    }
  }, 30_000);
});
