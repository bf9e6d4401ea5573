// Exact TPM and token quotas across replicas: three `keypool serve` processes sharing one PostgreSQL database and one
// Redis, driven over ext_proc gRPC concurrently. The requests carry no body here (request_headers end_of_stream), so
// each reserves exactly tokens.default_output (set to 1,000): a known estimate. An account with tpm_limit 10,000 admits exactly 10 of 45
// concurrent requests in its minute, a key with tpm 5,000 exactly 5, whichever replica decides.
// (Reconciliation with actual usage across connections: test/state/token-tpm-replicas.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { startReplicas, stopAll, type Replica } from '../helpers/replica.js';
import { redisAvailable } from '../state/services.js';
import { ACTOR, Deployment, REDIS_URL, uniqueRedisPrefix } from './deployment.js';
import { fireAcross, tallyAnswers, type Answer } from './traffic.js';

const REDIS = await redisAvailable();

describePostgres('token limits are exact across replicas through Redis', () => {
  describe.skipIf(!REDIS)('three replicas, one Redis', () => {
    let deployment: Deployment;
    const prefix = uniqueRedisPrefix();
    let replicas: Replica[] = [];
    let plainKey: string;
    let tokenKey: string;

    beforeAll(async () => {
      deployment = await Deployment.create();
      await deployment.addAccounts('openai', [{ name: 'tpm-10k', tpmLimit: 10_000 }]);
      // No account limit on anthropic: only the key's token quota refuses there.
      await deployment.addAccounts('anthropic', [{ name: 'free' }]);
      await deployment.repo.settings.set('tokens.default_output', 1_000, ACTOR);
      plainKey = (await deployment.repo.keys.create({ name: 'plain' }, ACTOR)).plaintextKey;
      tokenKey = (await deployment.repo.keys.create({ name: 'tpm-5k', tpmLimit: 5_000 }, ACTOR)).plaintextKey;
      replicas = await startReplicas(3, {
        databaseUrl: deployment.databaseUrl(),
        redisUrl: REDIS_URL,
        secrets: deployment.secrets,
        env: { KEYPOOL_REDIS_KEY_PREFIX: prefix, KEYPOOL_EXPECTED_REPLICAS: '3', KEYPOOL_STATE_TIMEOUT_MS: '2000' },
      });
    }, 90_000);

    afterAll(async () => {
      await stopAll(replicas);
      await deployment?.close([prefix]);
    }, 60_000);

    /** `total` requests spread over the replicas, 5 in flight per replica; answers completed at once. */
    const fire = (provider: string, key: string, total: number): Promise<Answer[]> =>
      fireAcross(replicas.map((r) => r.client), total, 5, () => ({ provider, clientKey: key, endOfStream: true }));

    it('an account with tpm_limit 10,000 and 1,000-token requests: exactly 10 of 45 admitted, 35 pool_exhausted', async () => {
      const startedAt = Date.now();
      const answers = await fire('openai', plainKey, 45);
      // The burst fits well inside one minute (else a second window would legitimately admit more).
      expect(Date.now() - startedAt).toBeLessThan(50_000);
      expect(tallyAnswers(answers)).toEqual({ allow: 10, pool_exhausted: 35 });
    }, 120_000);

    it('a key with tpm 5,000: exactly 5 of 30 admitted, 25 quota_exceeded with retry-after', async () => {
      const startedAt = Date.now();
      const answers = await fire('anthropic', tokenKey, 30);
      expect(Date.now() - startedAt).toBeLessThan(50_000);
      expect(tallyAnswers(answers)).toEqual({ allow: 5, quota_exceeded: 25 });
      for (const a of answers) if (a.kind === 'deny') expect(a.retryAfterSec).toBeGreaterThanOrEqual(1);
    }, 120_000);
  });
});
