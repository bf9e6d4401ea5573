// Several keypool replicas (separate `keypool serve` processes) sharing one PostgreSQL database and one Redis, driven
// over ext_proc gRPC the way Envoy drives them. The test process plays Envoy and the upstream provider.
//   1. exactness: rpm_limit and max_concurrency hold across replicas with zero overshoot;
//   2. a 429's retry-after seen through one replica is honoured by the others;
//   3. in-flight slots of a SIGKILLed replica come back after the lease time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { startReplicas, stopAll, type Replica } from '../helpers/replica.js';
import { redisAvailable } from '../state/services.js';
import { Deployment, REDIS_URL, uniqueRedisPrefix, type PooledAccount } from './deployment.js';
import { between, decide, describeAnswer, sleep, type Answer, type Exchange } from './traffic.js';

const REDIS = await redisAvailable();
const WINDOW_MS = 60_000;

describePostgres('replicas share exact rate state through Redis', () => {
  describe.skipIf(!REDIS)('three replicas, one Redis', () => {
    let deployment: Deployment;
    let clientKey: string;
    const prefix = uniqueRedisPrefix();
    const leasePrefix = uniqueRedisPrefix();
    let replicas: Replica[] = [];
    let leaseReplicas: Replica[] = [];
    let exactPool: PooledAccount[];
    let cooldownPool: PooledAccount[];
    let leasePool: PooledAccount[];

    beforeAll(async () => {
      deployment = await Deployment.create();
      // 1: three accounts at 60 rpm and 5 concurrent each.
      exactPool = await deployment.addAccounts(
        'openai',
        ['a', 'b', 'c'].map((name) => ({ name: `exact-${name}`, rpmLimit: 60, maxConcurrency: 5 })),
      );
      // 2: two unlimited accounts under round-robin (the seeded default strategy).
      cooldownPool = await deployment.addAccounts('openrouter', [{ name: 'cool-a' }, { name: 'cool-b' }]);
      // 3: one account at 5 concurrent, served by replicas with a 3 s lease (their own Redis prefix).
      leasePool = await deployment.addAccounts('openai-compatible', [{ name: 'lease-a', maxConcurrency: 5 }]);
      clientKey = (await deployment.issueKey('replica-client')).key;
      const common = { databaseUrl: deployment.databaseUrl(), redisUrl: REDIS_URL, secrets: deployment.secrets };
      [replicas, leaseReplicas] = await Promise.all([
        startReplicas(3, {
          ...common,
          env: {
            KEYPOOL_REDIS_KEY_PREFIX: prefix,
            KEYPOOL_EXPECTED_REPLICAS: '3',
            // Two cores run three replicas, 150 streams and the test: a 50 ms Redis deadline would send some admits
            // to the per-replica fallback under CPU queueing alone. This file is about shared exactness; the fallback
            // has its own test (faults.test.ts). Any fallback here is detected from the logs and fails the test.
            KEYPOOL_STATE_TIMEOUT_MS: '2000',
          },
        }),
        startReplicas(2, {
          ...common,
          prefix: 'lease',
          env: { KEYPOOL_REDIS_KEY_PREFIX: leasePrefix, KEYPOOL_LEASE_MS: '3000', KEYPOOL_STATE_TIMEOUT_MS: '2000' },
        }),
      ]);
    }, 90_000);

    afterAll(async () => {
      await stopAll([...replicas, ...leaseReplicas]);
      await deployment?.close([prefix, leasePrefix]);
    }, 60_000);

    it('1. 3 replicas x 50 concurrent streams: per account in-flight never above 5, admissions per 60 s never above 60', async () => {
      const byKey = new Map(exactPool.map((account) => [account.upstreamKey, account]));
      const stats = new Map(exactPool.map((account) => [account.id, { inFlight: 0, maxInFlight: 0, admittedAtMs: [] as number[] }]));
      const denials: Array<Extract<Answer, { kind: 'deny' }>> = [];
      const afterRpmExhausted: Array<Extract<Answer, { kind: 'deny' }>> = [];
      const failures: string[] = [];
      const STREAMS_PER_REPLICA = 50;
      const MAX_REQUESTS = 4_000;
      const DENIALS_AFTER_EXHAUSTION = 150;
      let sent = 0;
      let exhaustedAtMs: number | null = null;
      const startedAt = Date.now();
      const rpmExhausted = () => exactPool.every((account) => stats.get(account.id)!.admittedAtMs.length >= 60);
      const done = () => sent >= MAX_REQUESTS || afterRpmExhausted.length >= DENIALS_AFTER_EXHAUSTION || Date.now() - startedAt > 60_000;

      const worker = async (replica: Replica): Promise<void> => {
        while (!done()) {
          sent++;
          const sentAtMs = Date.now();
          const answer = await decide(replica.client, { provider: 'openai', clientKey });
          if (answer.kind === 'allow') {
            const account = byKey.get(answer.upstreamKey);
            if (account === undefined) {
              failures.push(`${replica.name}: unknown upstream key injected`);
              answer.exchange.abandon();
              continue;
            }
            // The mock upstream: the request occupies the account from the allow until the response.
            const s = stats.get(account.id)!;
            s.inFlight++;
            s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
            s.admittedAtMs.push(Date.now());
            if (exhaustedAtMs === null && rpmExhausted()) exhaustedAtMs = Date.now();
            await sleep(between(30, 200));
            s.inFlight--;
            try {
              await answer.exchange.respond(200, { 'content-type': 'application/json' });
            } catch (error) {
              failures.push(`${replica.name}: ${String(error)}`);
            }
          } else if (answer.kind === 'deny') {
            // Decided after the last account's 60th admission: every account is blocked by its window.
            (exhaustedAtMs !== null && sentAtMs > exhaustedAtMs ? afterRpmExhausted : denials).push(answer);
            // A well-behaved client backs off a little (keeps two cores from spinning on denials).
            await sleep(between(50, 250));
          } else {
            failures.push(`${replica.name}: ${answer.message}`);
          }
        }
      };
      await Promise.all(replicas.flatMap((replica) => Array.from({ length: STREAMS_PER_REPLICA }, () => worker(replica))));
      const elapsedMs = Date.now() - startedAt;

      const allDenials = [...denials, ...afterRpmExhausted];
      const maxInFlight = exactPool.map((account) => stats.get(account.id)!.maxInFlight);
      const admissions = exactPool.map((account) => stats.get(account.id)!.admittedAtMs.length);
      const maxPerWindow = exactPool.map((account) => maxInAnyWindow(stats.get(account.id)!.admittedAtMs, WINDOW_MS));
      const retryAfterExhausted = afterRpmExhausted.map((d) => d.retryAfterSec ?? 0);
      console.log(
        `[replicas] exactness: ${sent} requests in ${elapsedMs} ms over 3 replicas x ${STREAMS_PER_REPLICA} streams; ` +
          `admitted per account ${admissions.join('/')}, max per 60 s window ${maxPerWindow.join('/')}, ` +
          `max in-flight seen ${maxInFlight.join('/')}; ${allDenials.length} denials (429 pool_exhausted), ` +
          `${afterRpmExhausted.length} sent after every account's window was full, with retry-after ` +
          `${Math.min(...retryAfterExhausted)}..${Math.max(...retryAfterExhausted)} s`,
      );

      expect(failures).toEqual([]);
      for (const value of maxInFlight) expect(value).toBeLessThanOrEqual(5);
      // The limit was actually reached (the test exercised it), and never passed.
      expect(Math.max(...maxInFlight)).toBe(5);
      for (const value of maxPerWindow) expect(value).toBeLessThanOrEqual(60);
      // Every account's minute was filled exactly: zero overshoot and no slot lost across replicas.
      expect(admissions).toEqual([60, 60, 60]);
      expect(afterRpmExhausted.length).toBeGreaterThanOrEqual(DENIALS_AFTER_EXHAUSTION);
      for (const d of allDenials) {
        expect(d.status, describeAnswer(d)).toBe(429);
        expect(d.code, describeAnswer(d)).toBe('pool_exhausted');
        expect(d.retryAfterSec, describeAnswer(d)).toBeGreaterThanOrEqual(1);
      }
      // Once every window is full the hint points at the window's end, not at "1 s" (clients would hammer).
      for (const seconds of retryAfterExhausted) {
        expect(seconds).toBeGreaterThan(30);
        expect(seconds).toBeLessThanOrEqual(60);
      }
      // Every slot was handed back in Redis (all streams answered), and no replica fell back to local state.
      await sleep(200);
      for (const account of exactPool) expect(await deployment.leaseCount(prefix, 'openai', account.id)).toBe(0);
      for (const replica of replicas) {
        expect(replica.logs, `${replica.name} left shared state`).not.toContain('shared rate state lost');
        expect(replica.running).toBe(true);
      }
    }, 120_000);

    it('2. a 429 with retry-after: 7 through replica 1 makes replicas 2 and 3 skip that account for 7 s', async () => {
      const [first, second] = cooldownPool as [PooledAccount, PooledAccount];
      const nameOf = new Map(cooldownPool.map((account) => [account.upstreamKey, account.name]));
      const [r1, r2, r3] = replicas as [Replica, Replica, Replica];

      // Replica 1 admits `first` (round-robin: within two requests) and the upstream answers 429 retry-after: 7.
      let cooldownStartMs = 0;
      for (let attempt = 0; attempt < 4 && cooldownStartMs === 0; attempt++) {
        const answer = await decide(r1.client, { provider: 'openrouter', clientKey });
        if (answer.kind !== 'allow') throw new Error(`replica 1: ${describeAnswer(answer)}`);
        if (answer.upstreamKey === first.upstreamKey) {
          cooldownStartMs = Date.now();
          await answer.exchange.respond(429, { 'retry-after': '7', 'content-type': 'application/json' });
        } else {
          await answer.exchange.respond(200);
        }
      }
      expect(cooldownStartMs).toBeGreaterThan(0);

      // Replicas 2 and 3, alternately, every ~100 ms until both have served the first account again (ceiling 30 s:
      // a busy runner only makes probes sparser, never the cooldown shorter).
      const probes: Array<{ atMs: number; replica: string; account: string }> = [];
      const others: string[] = [];
      const backOnBoth = () => new Set(probes.filter((p) => p.account === first.name).map((p) => p.replica)).size === 2;
      while (!backOnBoth() && Date.now() - cooldownStartMs < 30_000) {
        for (const replica of [r2, r3]) {
          const answer = await decide(replica.client, { provider: 'openrouter', clientKey });
          if (answer.kind !== 'allow') {
            others.push(`${replica.name}: ${describeAnswer(answer)}`);
            continue;
          }
          probes.push({ atMs: Date.now() - cooldownStartMs, replica: replica.name, account: nameOf.get(answer.upstreamKey) ?? '?' });
          await answer.exchange.respond(200);
        }
        await sleep(100);
      }

      const firstBack = probes.find((p) => p.account === first.name);
      const lastSecondBefore = [...probes].reverse().find((p) => p.account === second.name && p.atMs < (firstBack?.atMs ?? Infinity));
      const backOn = new Set(probes.filter((p) => p.account === first.name).map((p) => p.replica));
      console.log(
        `[replicas] shared cooldown: ${probes.length} probes on replicas 2/3; account ${first.name} skipped until ` +
          `${firstBack?.atMs ?? 'never'} ms after the 429 (last probe served by ${second.name} at ${lastSecondBefore?.atMs} ms); ` +
          `back on ${[...backOn].join(', ')}`,
      );
      expect(others).toEqual([]);
      expect(firstBack, 'the cooled-down account never came back').toBeDefined();
      // Cooldown honoured on the replicas that never saw the 429: the first account is back no sooner than the 7 s
      // retry-after (less 1 s of rounding) after the 429 was sent; no upper window (the ceiling is the loop's 30 s).
      expect(firstBack!.atMs).toBeGreaterThanOrEqual(6_000);
      // Until then, every request on replicas 2 and 3 went to the other account, on both replicas...
      const before = probes.filter((p) => p.atMs < firstBack!.atMs);
      expect(before.every((p) => p.account === second.name)).toBe(true);
      expect(new Set(before.map((p) => p.replica))).toEqual(new Set([r2.name, r3.name]));
      expect(before.length).toBeGreaterThan(10);
      // ...and after it both replicas use the first account again.
      expect(backOn).toEqual(new Set([r2.name, r3.name]));
    }, 60_000);

    it('3. a replica SIGKILLed while holding every slot: the slots come back after the 3 s lease', async () => {
      const [holder, survivor] = leaseReplicas as [Replica, Replica];
      const account = leasePool[0]!;
      const request = { provider: 'openai-compatible', clientKey };

      // Before the requests leave: no lease can have started earlier, so none can expire before this + 3 s.
      const requestedAtMs = Date.now();
      const held = await Promise.all(Array.from({ length: 5 }, () => decide(holder.client, request)));
      expect(held.map((a) => a.kind)).toEqual(['allow', 'allow', 'allow', 'allow', 'allow']);
      expect(await deployment.leaseCount(leasePrefix, 'openai-compatible', account.id)).toBe(5);

      // Shared: the other replica sees max_concurrency reached.
      const before = await decide(survivor.client, request);
      expect(describeAnswer(before)).toMatch(/^deny 429 pool_exhausted/);

      const exit = await holder.kill('SIGKILL');
      const killedAtMs = Date.now();
      expect(exit.signal).toBe('SIGKILL');
      for (const answer of held) if (answer.kind === 'allow') answer.exchange.abandon();

      // Right after the kill: still denied (the dead replica's leases hold). Then admitted once they expire.
      let backAtMs: number | null = null;
      const deniedAfterKill: string[] = [];
      while (backAtMs === null && Date.now() - killedAtMs < 30_000) {
        const answer = await decide(survivor.client, request);
        if (answer.kind === 'allow') {
          backAtMs = Date.now();
          await answer.exchange.respond(200);
        } else {
          deniedAfterKill.push(describeAnswer(answer));
          await sleep(50);
        }
      }
      expect(backAtMs, 'slots never came back').not.toBeNull();
      const sinceRequestMs = backAtMs! - requestedAtMs;
      const sinceKillMs = backAtMs! - killedAtMs;

      // All five slots are back, not just one.
      const all = await Promise.all(Array.from({ length: 6 }, () => decide(survivor.client, request)));
      const allowed = all.filter((a): a is Extract<Answer, { kind: 'allow' }> => a.kind === 'allow');
      await Promise.all(allowed.map((a: { exchange: Exchange }) => a.exchange.respond(200)));
      console.log(
        `[replicas] lease recovery: 5 slots held by a SIGKILLed replica came back ${sinceRequestMs} ms after admission ` +
          `(${sinceKillMs} ms after the kill; lease 3000 ms); ${deniedAfterKill.length} denials meanwhile; then ${allowed.length}/6 admitted`,
      );
      expect(deniedAfterKill.length).toBeGreaterThan(0);
      for (const d of deniedAfterKill) expect(d).toMatch(/^deny 429 pool_exhausted/);
      // Order, not a window: not before the 3 s lease of the admission ran out (less rounding), and not held past the
      // lease of the last renewal, which the dead replica made no later than the kill (generous ceiling: 3 s lease +
      // 10 s of a busy runner's scheduling slack).
      expect(sinceRequestMs).toBeGreaterThanOrEqual(2_900);
      expect(sinceKillMs).toBeLessThanOrEqual(3_000 + 10_000);
      expect(allowed.length).toBe(5);
    }, 60_000);
  });
});

/** Largest number of timestamps inside any half-open interval [t, t + windowMs). */
function maxInAnyWindow(timestampsMs: readonly number[], windowMs: number): number {
  const sorted = [...timestampsMs].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}
