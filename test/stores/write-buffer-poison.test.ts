// A row the real database refuses (a NUL byte, which PostgreSQL text cannot hold) is dropped alone: the rest of its
// batch, and every other kind, reach the database. PGlite and PostgreSQL alike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/secrets/keyring.js';
import { parsePepper, generatePepperSpec } from '../../src/secrets/pepper.js';
import { WriteBuffer, type RejectedWrite } from '../../src/stores/write-buffer.js';
import { createPgliteDatabase, createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

function suite(name: string, open: () => Promise<TestDatabase>): void {
  describe(name, () => {
    let db: TestDatabase;
    let repo: ConfigRepository;

    beforeAll(async () => {
      db = await open();
      repo = new ConfigRepository(db.client, { keyring: Keyring.parse(Keyring.generateSpec()), pepper: parsePepper(generatePepperSpec()) });
    }, 60_000);

    afterAll(async () => {
      await db?.drop();
    });

    it('a poisoned audit row is dropped; its batch and the usage stats are written', async () => {
      const account = await repo.accounts.create({ providerSlug: 'openai', name: `poison-${Date.now()}`, apiKey: 'sk-poison-test-0001' }, 'test');
      const rejected: RejectedWrite[] = [];
      const errors: unknown[] = [];
      const buffer = new WriteBuffer({
        target: repo,
        maxPending: 1000,
        flushIntervalMs: 60_000,
        onRejected: (r) => rejected.push(r),
        onFlushError: (e) => errors.push(e),
      });
      for (let i = 0; i < 20; i++) {
        buffer.audit({ keyId: null, action: 'denied_ip', actor: i === 13 ? 'evil\u0000actor' : `poison-test-${i}`, clientIp: '10.0.0.1' });
      }
      buffer.recordUsage(account.id, Date.now(), 'success', 5);
      await buffer.flush();
      expect(errors).toEqual([]);
      expect(rejected.map((r) => r.kind)).toEqual(['audit']);
      expect(rejected[0]!.sqlState).toMatch(/^22/);
      const page = await repo.audit.list({ action: 'denied_ip', limit: 100 });
      const actors = page.rows.map((row) => row.actor).filter((actor) => actor.startsWith('poison-test-'));
      expect(actors).toHaveLength(19);
      const usage = await repo.usage.query({ from: new Date(Date.now() - 120_000), to: new Date(Date.now() + 120_000) });
      expect(usage.filter((u) => u.accountId === account.id).map((u) => u.requests)).toEqual([1]);
      expect(buffer.pending).toBe(0);
    });
  });
}

suite('PGlite', () => createPgliteDatabase({ migrate: true }));
describePostgres('PostgreSQL', () => suite('PostgreSQL', () => createPostgresDatabase({ migrate: true })));
