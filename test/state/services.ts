// Test helpers for the state stores: Redis reachability (skip with a notice, or fail under KEYPOOL_REQUIRE_SERVICES=1),
// unique key prefixes, cleanup.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { REDIS_CLIENT_DEFAULTS, RedisRateStateStore } from '../../src/stores/redis-state.js';

export const REDIS_URL = 'redis://127.0.0.1:6379';

/** True when Redis answers PING; throws when it does not and KEYPOOL_REQUIRE_SERVICES=1 (CI must not skip). */
export async function redisAvailable(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return true;
  } catch (error) {
    if (process.env.KEYPOOL_REQUIRE_SERVICES === '1') {
      throw new Error(`KEYPOOL_REQUIRE_SERVICES=1 but Redis at ${REDIS_URL} is unreachable: ${String(error)}`, { cause: error });
    }
    console.warn(`[keypool tests] Redis at ${REDIS_URL} is unreachable: Redis state tests are SKIPPED (${String(error)})`);
    return false;
  } finally {
    probe.disconnect();
  }
}

export function uniquePrefix(): string {
  return `kptest:${randomBytes(5).toString('hex')}:`;
}

/** Deletes every key under `prefix`. */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `count` Redis stores under `prefix`, each on its own connection as that many replicas hold them, on the test clock
 * (the scripts run on the nowMs the test passes instead of Redis TIME). close() removes the prefix's keys too.
 */
export async function openReplicaStores(count: number, prefix: string): Promise<{ readonly stores: RedisRateStateStore[]; close(): Promise<void> }> {
  const clients = Array.from({ length: count }, () => new Redis(REDIS_URL, REDIS_CLIENT_DEFAULTS));
  const stores = clients.map((client) => new RedisRateStateStore(client, { keyPrefix: prefix, testUseRequestClock: true }));
  await Promise.all(stores.map((store) => store.ready(5_000)));
  return {
    stores,
    close: async () => {
      await Promise.all(stores.map((store) => store.close()));
      if (clients[0]) await deletePrefix(clients[0], prefix);
      await Promise.all(clients.map((client) => client.quit()));
    },
  };
}
