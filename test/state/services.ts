// Test helpers for the state stores: Redis reachability (skip with a notice, or fail under KEYPOOL_REQUIRE_SERVICES=1),
// unique key prefixes, cleanup.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

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
