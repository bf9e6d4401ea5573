// What a SIGKILL loses: only what was produced in the last flush interval (KEYPOOL_FLUSH_INTERVAL_MS, 1 s by default)
// and not written yet. A `keypool serve` process with the default interval serves 30 allowed and 30 denied requests,
// then is killed; everything older than one interval (plus the write itself) is in PostgreSQL. Measured both ways:
// killed one and a half intervals after the last request (nothing may be lost), and killed at once (what is lost is
// logged: at most that last interval).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { Replica, stopAll } from '../helpers/replica.js';
import { Deployment, type PooledAccount } from './deployment.js';
import { decide, describeAnswer, sleep } from './traffic.js';

const FLUSH_INTERVAL_MS = 1_000;

describePostgres('SIGKILL loses at most the last flush interval of audit rows and usage counts', () => {
  let deployment: Deployment;
  let pool: PooledAccount[];
  let clientKey: string;
  let fenced: { id: string; key: string };
  const replicas: Replica[] = [];

  beforeAll(async () => {
    deployment = await Deployment.create();
    pool = await deployment.addAccounts('openai', [{ name: 'crash-a' }]);
    clientKey = (await deployment.issueKey('crash-client')).key;
    fenced = await deployment.issueKey('crash-fenced', ['10.9.0.0/16']);
  }, 60_000);

  afterAll(async () => {
    await stopAll(replicas);
    await deployment?.close();
  }, 60_000);

  /**
   * 30 allowed (answered 200) and 30 denied (ip_not_allowed) requests through `replica`, a little apart (~3 s in all,
   * so the flush interval cuts through them); resolves with when each one was answered.
   */
  async function traffic(replica: Replica): Promise<number[]> {
    const answeredAtMs: number[] = [];
    for (let i = 0; i < 30; i++) {
      const allowed = await decide(replica.client, { provider: 'openai', clientKey });
      if (allowed.kind !== 'allow') throw new Error(describeAnswer(allowed));
      await allowed.exchange.respond(200);
      const denied = await decide(replica.client, { provider: 'openai', clientKey: fenced.key, source: `192.0.2.${i + 1}:40000` });
      expect(describeAnswer(denied)).toBe('deny 403 ip_not_allowed retry-after=null');
      answeredAtMs.push(Date.now());
      await sleep(100);
    }
    return answeredAtMs;
  }

  async function recorded(): Promise<{ requests: number; denials: number }> {
    const usage = await deployment.usageTotals();
    return { requests: usage.get(pool[0]!.id)?.requests ?? 0, denials: await deployment.auditCount(fenced.id, 'denied_ip') };
  }

  async function replica(name: string): Promise<Replica> {
    // The shipped default interval (set explicitly so the test says what it measures).
    const started = await Replica.start({
      name,
      databaseUrl: deployment.databaseUrl(),
      secrets: deployment.secrets,
      env: { KEYPOOL_FLUSH_INTERVAL_MS: String(FLUSH_INTERVAL_MS) },
    });
    replicas.push(started);
    return started;
  }

  it('killed 1.5 intervals after the last request: nothing lost; killed at once: at most the last interval', async () => {
    const first = await replica('crash1');
    await traffic(first);
    await sleep(FLUSH_INTERVAL_MS * 1.5);
    await first.kill('SIGKILL');
    const afterWait = await recorded();

    const second = await replica('crash2');
    const before = await recorded();
    const answeredAtMs = await traffic(second);
    const killedAtMs = Date.now();
    await second.kill('SIGKILL');
    // The pairs answered in the last interval, plus half an interval for a flush that was still being written.
    const recent = answeredAtMs.filter((atMs) => atMs > killedAtMs - FLUSH_INTERVAL_MS * 1.5).length;
    const afterAtOnce = await recorded();
    const lost = { requests: 30 - (afterAtOnce.requests - before.requests), denials: 30 - (afterAtOnce.denials - before.denials) };
    console.log(
      `[replicas] SIGKILL loss: killed ${FLUSH_INTERVAL_MS * 1.5} ms after the last request: ` +
        `${30 - afterWait.requests}/30 usage requests and ${30 - afterWait.denials}/30 denials lost; killed at once: ` +
        `${lost.requests}/30 usage requests and ${lost.denials}/30 denials lost (${recent} pairs answered in the last 1.5 intervals)`,
    );
    expect(afterWait).toEqual({ requests: 30, denials: 30 });
    // Killed at once: only what was answered in the last interval (and the flush in flight) can be missing.
    expect(recent).toBeLessThan(30);
    expect(lost.requests).toBeLessThanOrEqual(recent);
    expect(lost.denials).toBeLessThanOrEqual(recent);
  }, 90_000);
});
