// A 429's cooldown is in the shared state before the replica that saw it answers: a request sent to another replica
// the instant that answer arrives never gets the throttled account. Two `keypool serve` processes, one Redis, the
// test playing Envoy and the provider. Replica 1 reaches Redis over a link that delays its writes by 10 ms while the
// 429 is observed (a proxy): were the observation sent after the answer, replica 2 (direct link) would admit the
// account in that gap. Also counts what one request costs in Redis (MONITOR): the admit, and the
// observation carrying the release, nothing else. And with a 1 s lease, a request held for 5 s keeps its slot on
// every replica by renewal.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RENEW_LUA } from '../../src/stores/redis-scripts.js';
import { CutProxy } from '../helpers/cut-proxy.js';
import { describePostgres } from '../helpers/db.js';
import { Replica, stopAll } from '../helpers/replica.js';
import { redisAvailable } from '../state/services.js';
import { Deployment, REDIS_URL, uniqueRedisPrefix, type PooledAccount } from './deployment.js';
import { decide, describeAnswer } from './traffic.js';

const REDIS = await redisAvailable();
const REPETITIONS = 1_000;
const SLOW_LINK_MS = 10;

describePostgres('a cooldown reaches every replica before the 429 is answered', () => {
  describe.skipIf(!REDIS)('two replicas, one Redis', () => {
    let deployment: Deployment;
    let clientKey: string;
    let pool: PooledAccount[];
    let single: PooledAccount;
    let replicas: Replica[] = [];
    const prefix = uniqueRedisPrefix();
    const slowLink = new CutProxy(Number(new URL(REDIS_URL).port));

    beforeAll(async () => {
      deployment = await Deployment.create();
      pool = await deployment.addAccounts('openrouter', [{ name: 'vis-a' }, { name: 'vis-b' }]);
      single = (await deployment.addAccounts('openai-compatible', [{ name: 'renew-a', maxConcurrency: 1 }]))[0]!;
      clientKey = (await deployment.issueKey('visibility-client')).key;
      const slowPort = await slowLink.start();
      const common = {
        databaseUrl: deployment.databaseUrl(),
        secrets: deployment.secrets,
        // A busy two-core runner must not push admits to the per-replica fallback: this file is about shared state.
        // A 1 s lease: the renewal test holds a request five times as long.
        env: { KEYPOOL_REDIS_KEY_PREFIX: prefix, KEYPOOL_STATE_TIMEOUT_MS: '2000', KEYPOOL_LEASE_MS: '1000' },
      };
      replicas = await Promise.all([
        Replica.start({ ...common, name: 'r1', redisUrl: `redis://127.0.0.1:${slowPort}` }),
        Replica.start({ ...common, name: 'r2', redisUrl: REDIS_URL }),
      ]);
    }, 90_000);

    afterAll(async () => {
      await stopAll(replicas);
      await slowLink.cut();
      await deployment?.close([prefix]);
    }, 60_000);

    it(`${REPETITIONS} times: 429 answered by replica 1, replica 2 asked at once: never the cooled account`, async () => {
      const [r1, r2] = replicas as [Replica, Replica];
      const byKey = new Map(pool.map((account) => [account.upstreamKey, account]));
      const request = { provider: 'openrouter', clientKey };
      const violations: string[] = [];
      const failures: string[] = [];
      const startedAt = Date.now();
      for (let i = 0; i < REPETITIONS; i++) {
        const first = await decide(r1.client, request);
        const cooled = first.kind === 'allow' ? byKey.get(first.upstreamKey) : undefined;
        if (first.kind !== 'allow' || cooled === undefined) {
          failures.push(`#${i} replica 1: ${describeAnswer(first)}`);
          continue;
        }
        // Resolves when replica 1's answer to the 429's response_headers arrives: Envoy would pass the 429 on now.
        // Only the observation travels the slow link (the admissions need not: it keeps 1,000 repetitions short).
        slowLink.delayToServiceMs = SLOW_LINK_MS;
        const firstClosed = await first.exchange.respondUntilAnswered(429, { 'retry-after': '60', 'content-type': 'application/json' });
        slowLink.delayToServiceMs = 0;
        const second = await decide(r2.client, request);
        await firstClosed;
        if (second.kind !== 'allow') {
          failures.push(`#${i} replica 2: ${describeAnswer(second)}`);
        } else {
          if (second.upstreamKey === cooled.upstreamKey) violations.push(`#${i}: replica 2 admitted ${cooled.name}`);
          await second.exchange.respond(200, { 'content-type': 'application/json' });
        }
        // Next repetition starts from two usable accounts again (what an operator's `enable` does to the cooldown).
        await deployment.redis.hdel(`${prefix}{kp:openrouter}:${cooled.id}:s`, 'cd');
      }
      const elapsedMs = Date.now() - startedAt;
      console.log(
        `[replicas] cooldown visibility: ${REPETITIONS} repetitions in ${elapsedMs} ms, ${violations.length} violations, ` +
          `${failures.length} other failures`,
      );
      expect(failures).toEqual([]);
      expect(violations).toEqual([]);
      for (const replica of replicas) expect(replica.logs).not.toContain('answering anyway');
    }, 120_000);

    it('one allowed request costs two Redis commands: the admit, and the observation that carries the release', async () => {
      const [, r2] = replicas as [Replica, Replica];
      const monitor = await new Redis(REDIS_URL).monitor();
      const commands: string[] = [];
      // A lease renewal is the keeper's timer (every third of the 1 s lease), not a cost of the request: on a busy
      // runner one may land while a request is held. Counted apart.
      const renewSha = createHash('sha1').update(RENEW_LUA).digest('hex');
      let renewals = 0;
      // Commands a client sent (MONITOR also lists what scripts run inside Redis, with source "lua": not round trips).
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (source === 'lua' || !args.some((arg) => arg.startsWith(prefix))) return;
        if (String(args[0]).toLowerCase() === 'evalsha' && args[1] === renewSha) renewals++;
        else commands.push(String(args[0]).toLowerCase());
      });
      try {
        const REQUESTS = 20;
        for (let i = 0; i < REQUESTS; i++) {
          const answer = await decide(r2.client, { provider: 'openrouter', clientKey });
          if (answer.kind !== 'allow') throw new Error(describeAnswer(answer));
          await answer.exchange.respond(200, { 'content-type': 'application/json' });
        }
        // MONITOR lines arrive after the replies; give the last ones a moment.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const counts: Record<string, number> = {};
        for (const command of commands) counts[command] = (counts[command] ?? 0) + 1;
        console.log(`[replicas] Redis commands for ${REQUESTS} allowed requests: ${JSON.stringify(counts)} (and ${renewals} lease renewals)`);
        expect(counts).toEqual({ evalsha: 2 * REQUESTS });
        for (const account of pool) expect(await deployment.leaseCount(prefix, 'openrouter', account.id)).toBe(0);
      } finally {
        monitor.disconnect();
      }
    }, 60_000);

    it('lease 1 s, a request held 5 s: its max_concurrency 1 slot holds on both replicas until it ends', async () => {
      const [r1, r2] = replicas as [Replica, Replica];
      const request = { provider: 'openai-compatible', clientKey };
      const held = await decide(r1.client, request);
      if (held.kind !== 'allow') throw new Error(describeAnswer(held));
      const startedAt = Date.now();
      const admittedMeanwhile: string[] = [];
      let probes = 0;
      while (Date.now() - startedAt < 5_000) {
        for (const replica of [r1, r2]) {
          const answer = await decide(replica.client, request);
          probes++;
          if (answer.kind === 'allow') {
            admittedMeanwhile.push(`${replica.name} at ${Date.now() - startedAt} ms`);
            await answer.exchange.respond(200);
          } else {
            expect(describeAnswer(answer)).toMatch(/^deny 429 pool_exhausted/);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await held.exchange.respond(200);
      // A plain success is not waited for: its release (riding on the observation) lands just after the answer.
      let after = await decide(r2.client, request);
      for (let attempt = 0; after.kind !== 'allow' && attempt < 40; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        after = await decide(r2.client, request);
      }
      console.log(`[replicas] lease renewal: ${probes} probes over 5 s with a 1 s lease, ${admittedMeanwhile.length} admitted over the limit`);
      expect(admittedMeanwhile).toEqual([]);
      expect(probes).toBeGreaterThan(20);
      expect(describeAnswer(after)).toMatch(/^allow/);
      if (after.kind === 'allow') await after.exchange.respond(200);
      // Every slot handed back (the last release rides on a success nobody waits for: give it a moment).
      for (let attempt = 0; attempt < 40 && (await deployment.leaseCount(prefix, 'openai-compatible', single.id)) > 0; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await deployment.leaseCount(prefix, 'openai-compatible', single.id)).toBe(0);
    }, 60_000);
  });
});
