// A tenant's day quota across replicas when the day rolls over: three RedisRateStateStore instances, each on its own
// connection (as three replicas hold them), on one controllable clock (the scripts run on the nowMs the test passes
// instead of Redis TIME). Requests race from all three in the last seconds of the quota day and in the first seconds
// of the next: each day admits exactly its limit, none more, whichever replica decided.
// (The 3-process test in test/replicas/quotas.test.ts covers the minute and the day on Redis TIME; it cannot move
// the server's clock to midnight.)
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zonedDayBounds } from '../../src/core/quota.js';
import type { AdmitResult, QuotaSubject } from '../../src/ports.js';
import type { RedisRateStateStore } from '../../src/stores/redis-state.js';
import { cand } from './rate-state.contract.js';
import { openReplicaStores, redisAvailable, uniquePrefix } from './services.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
/** The quota zone: its midnight is 2027-03-27T23:00:00Z (Berlin is UTC+1 until the next morning's DST switch). */
const ZONE = 'Europe/Berlin';
const MIDNIGHT_MS = Date.parse('2027-03-27T23:00:00Z');
const RPD = 100;
const REPLICAS = 3;
/** Requests each replica sends per day: 150 in all, 50 more than the limit. */
const PER_REPLICA = 50;

describe.skipIf(!available)('a day quota across three Redis connections when the day rolls over', () => {
  let stores: RedisRateStateStore[] = [];
  let close: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ stores, close } = await openReplicaStores(REPLICAS, prefix));
  });

  afterAll(async () => {
    await close?.();
  });

  /** Every replica sends PER_REPLICA requests concurrently, at instants spread over [fromMs, fromMs + spreadMs). */
  async function race(pool: string, tenant: QuotaSubject, fromMs: number, spreadMs: number): Promise<AdmitResult[]> {
    const attempts = stores.flatMap((store, replica) =>
      Array.from({ length: PER_REPLICA }, (_, i) => {
        const nowMs = fromMs + Math.floor(((i * REPLICAS + replica) * spreadMs) / (PER_REPLICA * REPLICAS));
        return store.admit({
          pool,
          candidates: [cand('a'), cand('b')],
          leastLoaded: false,
          nowMs,
          leaseMs: 60_000,
          quotas: [{ scope: 'key', id: `key-${replica}`, rpmLimit: null, rpdLimit: null }, tenant],
          dayBounds: zonedDayBounds(nowMs, ZONE),
        });
      }),
    );
    return Promise.all(attempts);
  }

  it(`rpd ${RPD}: exactly ${RPD} admitted in the day's last seconds and exactly ${RPD} in the next day's first, 0 overshoot`, async () => {
    const run = randomBytes(4).toString('hex');
    const pool = `pool-${run}`;
    // The minute limit is far above the load: it only shows that the sliding minute runs on across midnight.
    const tenant: QuotaSubject = { scope: 'tenant', id: `acme-${run}`, rpmLimit: 1_000, rpdLimit: RPD };

    const before = await race(pool, tenant, MIDNIGHT_MS - 10_000, 9_000);
    expect(before.filter((r) => r.ok)).toHaveLength(RPD);
    const refused = before.filter((r) => !r.ok);
    expect(refused).toHaveLength(REPLICAS * PER_REPLICA - RPD);
    // Every refusal names the tenant's day and frees at the zone's midnight.
    for (const r of refused) expect(r).toEqual({ ok: false, reason: 'quota', retryAtMs: MIDNIGHT_MS, limit: { scope: 'tenant', window: 'day' } });

    // One millisecond before midnight the day is still spent, on every replica.
    for (const store of stores) {
      const late = await store.admit({
        pool,
        candidates: [cand('a')],
        leastLoaded: false,
        nowMs: MIDNIGHT_MS - 1,
        leaseMs: 60_000,
        quotas: [tenant],
        dayBounds: zonedDayBounds(MIDNIGHT_MS - 1, ZONE),
      });
      expect(late).toMatchObject({ ok: false, reason: 'quota' });
    }

    const after = await race(pool, tenant, MIDNIGHT_MS, 9_000);
    expect(after.filter((r) => r.ok)).toHaveLength(RPD);
    // The new day ends at the next zone midnight, 23 hours later (the clocks go forward at 02:00 that night).
    const nextMidnightMs = Date.parse('2027-03-28T22:00:00Z');
    for (const r of after.filter((a) => !a.ok)) expect(r).toMatchObject({ reason: 'quota', retryAtMs: nextMidnightMs });

    const usage = await stores[1]!.inspectQuota(tenant, MIDNIGHT_MS + 10_000, zonedDayBounds(MIDNIGHT_MS + 10_000, ZONE));
    // The day starts again at midnight; the sliding minute still holds the 100 admitted before it.
    expect(usage).toEqual({ minute: 2 * RPD, day: RPD, dayStartMs: MIDNIGHT_MS, dayEndMs: nextMidnightMs, tokenMinute: 0, tokenDay: 0 });
  });
});
