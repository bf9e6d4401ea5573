// Quotas across replicas: three `keypool serve` processes sharing one PostgreSQL database and one Redis, driven over
// ext_proc gRPC concurrently. A key with rpm 30 gets exactly 30 admissions in its minute and a tenant with rpd 100
// exactly 100 in its day, whichever replica decides; every other request is 429 quota_exceeded with a retry-after.
// (The day rolling over is covered on a controllable clock: test/state/quota-day-replicas.test.ts races three Redis
// connections across the zone's midnight; test/state/quota-state.contract.ts holds every store to it.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { startReplicas, stopAll, type Replica } from '../helpers/replica.js';
import { redisAvailable } from '../state/services.js';
import { ACTOR, Deployment, REDIS_URL, uniqueRedisPrefix } from './deployment.js';
import { fireAcross, tallyAnswers, type Answer } from './traffic.js';

const REDIS = await redisAvailable();

describePostgres('quotas are exact across replicas through Redis', () => {
  describe.skipIf(!REDIS)('three replicas, one Redis', () => {
    let deployment: Deployment;
    const prefix = uniqueRedisPrefix();
    let replicas: Replica[] = [];
    let rpmKey: string;
    const tenantKeys: string[] = [];

    beforeAll(async () => {
      deployment = await Deployment.create();
      // Unlimited accounts: only the quotas refuse.
      await deployment.addAccounts('openai', [{ name: 'quota-a' }, { name: 'quota-b' }]);
      rpmKey = (await deployment.repo.keys.create({ name: 'rpm-30', rpmLimit: 30 }, ACTOR)).plaintextKey;
      await deployment.repo.tenants.create({ id: 'acme', name: 'ACME', rpdLimit: 100 }, ACTOR);
      for (const name of ['acme-1', 'acme-2', 'acme-3']) {
        tenantKeys.push((await deployment.repo.keys.create({ name, tenantId: 'acme' }, ACTOR)).plaintextKey);
      }
      replicas = await startReplicas(3, {
        databaseUrl: deployment.databaseUrl(),
        redisUrl: REDIS_URL,
        secrets: deployment.secrets,
        // Shared exactness is the subject: a generous Redis deadline keeps CPU queueing on two cores from sending
        // admits to the per-replica fallback.
        env: { KEYPOOL_REDIS_KEY_PREFIX: prefix, KEYPOOL_EXPECTED_REPLICAS: '3', KEYPOOL_STATE_TIMEOUT_MS: '2000' },
      });
    }, 90_000);

    afterAll(async () => {
      await stopAll(replicas);
      await deployment?.close([prefix]);
    }, 60_000);

    /** `total` requests spread over the replicas, 10 in flight per replica; answers completed at once. */
    const fire = (keys: readonly string[], total: number): Promise<Answer[]> =>
      fireAcross(replicas.map((r) => r.client), total, 10, (i) => ({ provider: 'openai', clientKey: keys[i % keys.length]! }));

    it('a key with rpm 30: exactly 30 of 90 concurrent requests admitted, 60 quota_exceeded with retry-after', async () => {
      const startedAt = Date.now();
      const answers = await fire([rpmKey], 90);
      // The whole burst fits well inside one minute (else a second window would legitimately admit more).
      expect(Date.now() - startedAt).toBeLessThan(50_000);
      expect(tallyAnswers(answers)).toEqual({ allow: 30, quota_exceeded: 60 });
      for (const a of answers) if (a.kind === 'deny') expect(a.retryAfterSec).toBeGreaterThanOrEqual(1);
    }, 120_000);

    it('a tenant with rpd 100 over three keys: exactly 100 of 150 admitted, 50 quota_exceeded until the day ends', async () => {
      const answers = await fire(tenantKeys, 150);
      expect(tallyAnswers(answers)).toEqual({ allow: 100, quota_exceeded: 50 });
      const secondsToMidnightUtc = Math.ceil((Math.ceil(Date.now() / 86_400_000) * 86_400_000 - Date.now()) / 1000);
      for (const a of answers) {
        if (a.kind === 'deny') {
          expect(a.retryAfterSec).toBeGreaterThanOrEqual(secondsToMidnightUtc - 120);
          expect(a.retryAfterSec).toBeLessThanOrEqual(secondsToMidnightUtc + 120);
        }
      }
    }, 120_000);
  });
});
