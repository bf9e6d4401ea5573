// Exact TPM across replicas: three RedisRateStateStore instances, each on its own connection (as three replicas hold
// them), on one controllable clock (the scripts run on the nowMs the test passes instead of Redis TIME). An account
// with tpm_limit 10,000 gets requests of known estimates from all three at once, tick after tick for three minutes:
// the estimates admitted in any sliding minute never exceed 10,000, whichever replica decided; after the replicas
// reconcile every admission with its actual usage, the window holds exactly the actual figures.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WINDOW_MS } from '../../src/core/capacity.js';
import type { RedisRateStateStore } from '../../src/stores/redis-state.js';
import { cand } from './rate-state.contract.js';
import { openReplicaStores, redisAvailable, uniquePrefix } from './services.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
const T0 = 1_800_000_000_000;
const TPM = 10_000;
const REPLICAS = 3;
/** Requests each replica sends per tick, concurrently with the others. */
const PER_TICK = 4;
const TICK_MS = 5_000;
const TICKS = 36;

/** The known estimate of request i of replica r at tick t: 300..1,000 tokens. */
function estimateOf(tick: number, replica: number, i: number): number {
  return 300 + ((tick * 7 + replica * 5 + i * 3) % 8) * 100;
}

interface Admitted {
  readonly atMs: number;
  readonly tokens: number;
  readonly leaseId: string;
  readonly replica: number;
}

describe.skipIf(!available)('exact TPM across three Redis connections', () => {
  let stores: RedisRateStateStore[] = [];
  let close: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ stores, close } = await openReplicaStores(REPLICAS, prefix));
  });

  afterAll(async () => {
    await close?.();
  });

  it('admitted estimates never exceed tpm_limit in any minute; after reconciling, the window holds the actual usage', async () => {
    const pool = `tpm-${randomBytes(4).toString('hex')}`;
    const account = [cand('a', { tpmLimit: TPM })];
    const admitted: Admitted[] = [];
    let refused = 0;
    for (let tick = 0; tick < TICKS; tick++) {
      const nowMs = T0 + tick * TICK_MS;
      const results = await Promise.all(
        stores.flatMap((store, replica) =>
          Array.from({ length: PER_TICK }, async (_, i) => {
            const tokens = estimateOf(tick, replica, i);
            const result = await store.admit({ pool, candidates: account, leastLoaded: false, nowMs, leaseMs: 600_000, tokens });
            return { result, tokens, replica };
          }),
        ),
      );
      for (const { result, tokens, replica } of results) {
        if (result.ok) admitted.push({ atMs: nowMs, tokens, leaseId: result.leaseId, replica });
        else {
          expect(result.reason).toBe('exhausted');
          refused++;
        }
      }
    }
    // 12 requests of ~650 tokens every 5 s offer ~94,000 tokens a minute: most are refused, many admitted.
    expect(refused).toBeGreaterThan(admitted.length);
    expect(admitted.length).toBeGreaterThan(40);
    // Every replica admitted some (the limit is shared, not split).
    expect(new Set(admitted.map((a) => a.replica)).size).toBe(REPLICAS);
    let busiest = 0;
    for (const end of admitted) {
      const inWindow = admitted.filter((a) => a.atMs > end.atMs - WINDOW_MS && a.atMs <= end.atMs).reduce((sum, a) => sum + a.tokens, 0);
      expect(inWindow).toBeLessThanOrEqual(TPM);
      busiest = Math.max(busiest, inWindow);
    }
    // The limit is reached, not just respected (the smallest estimate is 300).
    expect(busiest).toBeGreaterThan(TPM - 300);

    // Reconcile: every admission of the last minute used 40 % of its estimate; each replica reconciles its own.
    const lastMs = T0 + (TICKS - 1) * TICK_MS;
    const live = admitted.filter((a) => a.atMs > lastMs - WINDOW_MS);
    await Promise.all(
      live.map((a) => {
        const actual = Math.round(a.tokens * 0.4);
        return stores[a.replica]!.reconcileTokens(pool, 'a', a.leaseId, a.atMs, actual - a.tokens, [], lastMs);
      }),
    );
    const actualInWindow = live.reduce((sum, a) => sum + Math.round(a.tokens * 0.4), 0);
    // Probe at the same instant with 1-token requests from all replicas: exactly the room the actual usage leaves.
    let probes = 0;
    for (;;) {
      const batch = await Promise.all(
        stores.map((store) => store.admit({ pool, candidates: account, leastLoaded: false, nowMs: lastMs, leaseMs: 600_000, tokens: 100 })),
      );
      const ok = batch.filter((r) => r.ok).length;
      probes += ok;
      if (ok < batch.length) break;
    }
    expect(probes).toBe(Math.floor((TPM - actualInWindow) / 100));
  });
});
