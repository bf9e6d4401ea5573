// Three keypool replicas (separate `keypool serve` processes) sharing rate state through a real local Redis Cluster
// (3 masters + 3 replicas, REDIS_URL=redis+cluster://...), driven over ext_proc gRPC the way Envoy drives them:
//   1. exactness: rpm_limit and max_concurrency hold across replicas with zero overshoot;
//   2. a 429's retry-after seen through one replica is honoured by the others;
//   3. the master serving a pool's slot is SIGKILLed under load: the replicas follow their failure mode (local)
//      while its replica is promoted, go back to shared state by themselves, and the limits are exact again.
// Assertions are about order and bounds (two busy cores), never about how fast a failover is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { LocalRedisCluster, redisClusterToolsAvailable } from '../helpers/redis-cluster.js';
import { startReplicas, stopAll, type Replica } from '../helpers/replica.js';
import { createRedisClient } from '../../src/stores/redis-connection.js';
import { REDIS_CLIENT_DEFAULTS, RedisRateStateStore } from '../../src/stores/redis-state.js';
import { ACTOR, Deployment, uniqueRedisPrefix, type PooledAccount } from './deployment.js';
import { between, decide, describeAnswer, sleep, type Answer } from './traffic.js';

const TOOLS = redisClusterToolsAvailable('replicas on a Redis Cluster');
const LOST = 'shared rate state lost';
const BACK = 'shared rate state is back';

type Allowed = Extract<Answer, { kind: 'allow' }>;

describePostgres('replicas share exact rate state through a Redis Cluster', () => {
  describe.skipIf(!TOOLS)('three replicas, one 3+3 cluster', () => {
    let cluster: LocalRedisCluster;
    let deployment: Deployment;
    let inspector: RedisRateStateStore;
    let failoverInspector: RedisRateStateStore;
    let clientKey: string;
    const prefix = uniqueRedisPrefix();
    const failoverPrefix = uniqueRedisPrefix();
    let replicas: Replica[] = [];
    let failoverReplicas: Replica[] = [];
    let exactPool: PooledAccount[];
    let cooldownPool: PooledAccount[];
    let failoverAccount: PooledAccount;

    beforeAll(async () => {
      cluster = await LocalRedisCluster.start();
      deployment = await Deployment.create();
      exactPool = await deployment.addAccounts('openai', ['a', 'b', 'c'].map((name) => ({ name: `exact-${name}`, rpmLimit: 30, maxConcurrency: 3 })));
      cooldownPool = await deployment.addAccounts('openrouter', [{ name: 'cool-a' }, { name: 'cool-b' }]);
      [failoverAccount] = (await deployment.addAccounts('openai-compatible', [{ name: 'fo-load', maxConcurrency: 4 }])) as [PooledAccount];
      clientKey = (await deployment.issueKey('cluster-client')).key;
      inspector = new RedisRateStateStore(createRedisClient(cluster.url(), REDIS_CLIENT_DEFAULTS), { keyPrefix: prefix }, true);
      failoverInspector = new RedisRateStateStore(createRedisClient(cluster.url(), REDIS_CLIENT_DEFAULTS), { keyPrefix: failoverPrefix }, true);
      const common = { databaseUrl: deployment.databaseUrl(), redisUrl: cluster.url(), secrets: deployment.secrets };
      [replicas, failoverReplicas] = await Promise.all([
        startReplicas(3, {
          ...common,
          env: {
            KEYPOOL_REDIS_KEY_PREFIX: prefix,
            KEYPOOL_EXPECTED_REPLICAS: '3',
            // As in shared-state.test.ts: CPU queueing on two cores must not send healthy admits to the fallback.
            KEYPOOL_STATE_TIMEOUT_MS: '2000',
          },
        }),
        // The failover group's deadline is short enough that a dead slot owner (gone for the 2 s node timeout and the
        // election) trips the breaker instead of being ridden out by the client's retries, and long enough that a
        // healthy admit on two cores busy with the whole suite stays shared (seen: 476 ms answers there).
        startReplicas(3, {
          ...common,
          prefix: 'fo',
          env: {
            KEYPOOL_REDIS_KEY_PREFIX: failoverPrefix,
            KEYPOOL_EXPECTED_REPLICAS: '3',
            KEYPOOL_STATE_TIMEOUT_MS: '1000',
            // Leases whose release was lost in the failover come back after 3 s instead of the default.
            KEYPOOL_LEASE_MS: '3000',
            LOG_LEVEL: 'info',
          },
        }),
      ]);
      await Promise.all([inspector.ready(10_000), failoverInspector.ready(10_000)]);
    }, 90_000);

    afterAll(async () => {
      await stopAll([...replicas, ...failoverReplicas]);
      await inspector?.close();
      await failoverInspector?.close();
      await deployment?.close();
      await cluster?.stop();
    }, 60_000);

    const inFlight = async (pool: string, account: PooledAccount, store = inspector): Promise<number> =>
      (await store.inspect(pool, [account.id], Date.now()))[0]!.inFlight;

    it('1. 3 replicas x 20 streams: per account in-flight never above 3, exactly 30 admissions per account per minute', async () => {
      const byKey = new Map(exactPool.map((account) => [account.upstreamKey, account.id]));
      const stats = new Map(exactPool.map((account) => [account.id, { inFlight: 0, maxInFlight: 0, admitted: 0 }]));
      const denials: string[] = [];
      const failures: string[] = [];
      let deniedAfterFull = 0;
      const full = () => [...stats.values()].every((s) => s.admitted >= 30);
      const startedAt = Date.now();
      const done = () => deniedAfterFull >= 60 || Date.now() - startedAt > 45_000;
      const worker = async (replica: Replica): Promise<void> => {
        while (!done()) {
          const wasFull = full();
          const answer = await decide(replica.client, { provider: 'openai', clientKey, timeoutMs: 10_000 });
          if (answer.kind === 'allow') {
            const s = stats.get(byKey.get(answer.upstreamKey) ?? '');
            if (s === undefined) {
              failures.push(`${replica.name}: unknown upstream key`);
              answer.exchange.abandon();
              continue;
            }
            s.admitted++;
            s.inFlight++;
            s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
            await sleep(between(20, 120));
            s.inFlight--;
            await answer.exchange.respond(200).catch((error: unknown) => failures.push(String(error)));
          } else if (answer.kind === 'deny') {
            denials.push(describeAnswer(answer));
            if (wasFull) deniedAfterFull++;
            await sleep(between(50, 150));
          } else {
            failures.push(`${replica.name}: ${answer.message}`);
          }
        }
      };
      await Promise.all(replicas.flatMap((replica) => Array.from({ length: 20 }, () => worker(replica))));
      const all = [...stats.values()];
      console.log(
        `[redis-cluster] exactness: admitted per account ${all.map((s) => s.admitted).join('/')}, ` +
          `max in-flight ${all.map((s) => s.maxInFlight).join('/')}, ${denials.length} denials in ${Date.now() - startedAt} ms`,
      );
      expect(failures).toEqual([]);
      expect(all.map((s) => s.admitted)).toEqual([30, 30, 30]);
      for (const s of all) expect(s.maxInFlight).toBeLessThanOrEqual(3);
      expect(Math.max(...all.map((s) => s.maxInFlight))).toBe(3);
      expect(deniedAfterFull).toBeGreaterThanOrEqual(60);
      for (const d of denials) expect(d).toMatch(/^deny 429 pool_exhausted/);
      for (const account of exactPool) expect(await inFlight('openai', account)).toBe(0);
      for (const replica of replicas) expect(replica.logs, replica.name).not.toContain(LOST);
    }, 90_000);

    it('2. a 429 with retry-after: 4 through replica 1 makes replicas 2 and 3 skip that account for 4 s', async () => {
      const first = cooldownPool[0]!;
      const [r1, r2, r3] = replicas as [Replica, Replica, Replica];
      let cooldownStartMs = 0;
      for (let attempt = 0; attempt < 4 && cooldownStartMs === 0; attempt++) {
        const answer = await decide(r1.client, { provider: 'openrouter', clientKey });
        if (answer.kind !== 'allow') throw new Error(`replica 1: ${describeAnswer(answer)}`);
        if (answer.upstreamKey === first.upstreamKey) {
          cooldownStartMs = Date.now();
          await answer.exchange.respond(429, { 'retry-after': '4' });
        } else {
          await answer.exchange.respond(200);
        }
      }
      expect(cooldownStartMs).toBeGreaterThan(0);
      const probes: Array<{ atMs: number; replica: string; first: boolean }> = [];
      // Until both replicas have served the first account again (ceiling 30 s: a busy runner only makes probes sparser).
      const backOnBoth = () => new Set(probes.filter((p) => p.first).map((p) => p.replica)).size === 2;
      while (!backOnBoth() && Date.now() - cooldownStartMs < 30_000) {
        for (const replica of [r2, r3]) {
          const answer = await decide(replica.client, { provider: 'openrouter', clientKey });
          if (answer.kind !== 'allow') throw new Error(`${replica.name}: ${describeAnswer(answer)}`);
          probes.push({ atMs: Date.now() - cooldownStartMs, replica: replica.name, first: answer.upstreamKey === first.upstreamKey });
          await answer.exchange.respond(200);
        }
        await sleep(100);
      }
      const firstBack = probes.find((p) => p.first);
      console.log(`[redis-cluster] shared cooldown: ${first.name} skipped by replicas 2/3 until ${firstBack?.atMs} ms after the 429`);
      expect(firstBack, 'the cooled-down account never came back').toBeDefined();
      expect(firstBack!.atMs).toBeGreaterThanOrEqual(3_000);
      expect(probes.filter((p) => p.atMs < firstBack!.atMs).length).toBeGreaterThan(10);
      expect(new Set(probes.filter((p) => p.first).map((p) => p.replica))).toEqual(new Set([r2.name, r3.name]));
    }, 60_000);

    it("3. the master serving a pool's slot dies under load: local fallback, shared again after the promotion, exact limits", async () => {
      const pool = 'openai-compatible';
      const killedPort = await cluster.masterOf(`kp:${pool}`);
      const answers: Array<{ phase: 'before' | 'during' | 'after'; answer: string; latencyMs: number }> = [];
      let phase: 'before' | 'during' | 'after' = 'before';
      let stop = false;
      // Requests the mock upstream holds at once on the load account (max_concurrency 4), highest per phase.
      let holding = 0;
      const maxHolding = { before: 0, during: 0, after: 0 };
      const worker = async (replica: Replica): Promise<void> => {
        while (!stop) {
          const answer = await decide(replica.client, { provider: pool, clientKey, timeoutMs: 15_000 });
          answers.push({ phase, answer: answer.kind === 'allow' ? 'allow' : describeAnswer(answer), latencyMs: answer.latencyMs });
          if (answer.kind === 'allow') {
            holding++;
            maxHolding[phase] = Math.max(maxHolding[phase], holding);
            await sleep(between(10, 60));
            holding--;
            await answer.exchange.respond(200).catch(() => undefined);
          } else {
            await sleep(between(30, 80));
          }
        }
      };
      const load = Promise.all(failoverReplicas.flatMap((replica) => Array.from({ length: 6 }, () => worker(replica))));
      try {
        // A little shared traffic first (the breaker judges failures over a 10 s window), then the hard kill of the
        // slot's master.
        while (answers.filter((a) => a.answer === 'allow').length < 6) await sleep(50);
        phase = 'during';
        cluster.kill(killedPort);
        // The cluster promotes the dead master's replica (after cluster-node-timeout)...
        let newMaster = killedPort;
        const deadline = Date.now() + 40_000;
        while (Date.now() < deadline && (newMaster === killedPort || !everyReplicaBack(failoverReplicas))) {
          await sleep(200);
          newMaster = await cluster.masterOf(`kp:${pool}`).catch(() => killedPort);
        }
        phase = 'after';
        // ...and every replica that lost shared state has found it again (breaker closed by a trial admit). A replica
        // may lose it once more while the cluster settles after the promotion (its topology refresh races the first
        // admits on the new master): wait, under load, until each is back from its last loss.
        const settled = Date.now() + 20_000;
        while (!everyReplicaBack(failoverReplicas) && Date.now() < settled) await sleep(200);
        await sleep(500);
      } finally {
        stop = true;
        await load;
      }
      const lostBy = failoverReplicas.filter((r) => r.logs.includes(LOST)).map((r) => r.name);
      const summary = (p: string) => {
        const counts = new Map<string, number>();
        for (const a of answers.filter((x) => x.phase === p)) counts.set(a.answer, (counts.get(a.answer) ?? 0) + 1);
        const slowestMs = Math.round(Math.max(0, ...answers.filter((x) => x.phase === p).map((x) => x.latencyMs)));
        return `${JSON.stringify(Object.fromEntries(counts))} (slowest ${slowestMs} ms)`;
      };
      console.log(
        `[redis-cluster] failover: killed master :${killedPort}; new master :${await cluster.masterOf(`kp:${pool}`)}; ` +
          `replicas that fell back to local state: ${lostBy.join(', ') || 'none'}; answers before ${summary('before')}, ` +
          `during ${summary('during')}, after ${summary('after')}; most held at once ${JSON.stringify(maxHolding)}`,
      );
      expect(await cluster.masterOf(`kp:${pool}`)).not.toBe(killedPort);
      // Failure mode 'local': every answer was a decision (allow, or 429 on a full pool); never an error or a 503.
      for (const a of answers) expect(a.answer).toMatch(/^(allow|deny 429 pool_exhausted)/);
      // Exact while shared; while the slot moves, each replica adds at most its local share (floor(4 / 3) = 1) to the
      // shared leases (at most 4, on the old master or the promoted one): never more than 7 at once.
      expect(maxHolding.before).toBeLessThanOrEqual(4);
      expect(maxHolding.during).toBeLessThanOrEqual(4 + 3 * 1);
      // The slot was unreachable long enough that replicas noticed, and each one that did came back, in that order.
      expect(lostBy.length).toBeGreaterThan(0);
      for (const replica of failoverReplicas) {
        const lost = replica.logs.lastIndexOf(LOST);
        if (lost >= 0) expect(replica.logs.indexOf(BACK, lost), `${replica.name} never returned to shared state`).toBeGreaterThan(lost);
      }

      // Limits are exact again on the promoted master. Leases whose release was lost expire after 3 s first.
      const settleDeadline = Date.now() + 20_000;
      while ((await inFlight(pool, failoverAccount, failoverInspector)) > 0 && Date.now() < settleDeadline) await sleep(250);
      expect(await inFlight(pool, failoverAccount, failoverInspector)).toBe(0);
      // A new account in the pool (the old one disabled) gives a fresh rpm window: 12 per minute, 3 at a time.
      await deployment.repo.accounts.setStatus(failoverAccount.id, 'disabled', 'replaced after the failover test', ACTOR);
      const [fresh] = (await deployment.addAccounts(pool, [{ name: 'fo-after', rpmLimit: 12, maxConcurrency: 3 }])) as [PooledAccount];
      let admittedFresh = 0;
      for (const replica of failoverReplicas) {
        // Until this replica's snapshot has the new account (change feed, ~100 ms).
        for (let tries = 0; tries < 100; tries++) {
          const answer = await decide(replica.client, { provider: pool, clientKey });
          if (answer.kind === 'allow') await answer.exchange.respond(200);
          if (answer.kind === 'allow' && answer.upstreamKey === fresh.upstreamKey) {
            admittedFresh++;
            break;
          }
          await sleep(100);
        }
      }
      expect(admittedFresh).toBe(3);
      const bursts: number[] = [];
      while (bursts.length < 6) {
        const burst = await Promise.all(failoverReplicas.flatMap((replica) => Array.from({ length: 10 }, () => decide(replica.client, { provider: pool, clientKey }))));
        const allowed = burst.filter((a): a is Allowed => a.kind === 'allow');
        bursts.push(allowed.length);
        expect(await inFlight(pool, fresh, failoverInspector)).toBe(allowed.length);
        for (const a of burst) if (a.kind !== 'allow') expect(describeAnswer(a)).toMatch(/^deny 429 pool_exhausted/);
        await Promise.all(allowed.map((a) => a.exchange.respond(200)));
        admittedFresh += allowed.length;
        if (allowed.length === 0) break;
      }
      console.log(`[redis-cluster] after the failover: bursts of 30 admitted ${bursts.join('/')} (max_concurrency 3, 12 per minute)`);
      expect(bursts).toEqual([3, 3, 3, 0]);
      expect(admittedFresh).toBe(12);
    }, 90_000);
  });
});

function everyReplicaBack(replicas: readonly Replica[]): boolean {
  return replicas.every((replica) => {
    const lost = replica.logs.lastIndexOf(LOST);
    return lost < 0 || replica.logs.indexOf(BACK, lost) > lost;
  });
}
