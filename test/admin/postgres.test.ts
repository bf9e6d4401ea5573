// The admin API on PostgreSQL: a subset of the route tests plus what only a real server shows — concurrent
// idempotent rotations on separate connections, and a second replica (own connection, own snapshot holder)
// reached by the change feed within 2 s. Skipped with a notice when PostgreSQL is not reachable, failed under
// KEYPOOL_REQUIRE_SERVICES=1.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_KEY_HEADERS } from '../../src/core/apikey.js';
import { authorizeRequest } from '../../src/core/request.js';
import { SnapshotHolder } from '../../src/snapshot/holder.js';
import type { PostgresClient } from '../../src/stores/postgres-client.js';
import { createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import { eventually, startHarness, TOKEN_NAME, UPSTREAM_KEYS, type Harness } from './harness.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

describePostgres('admin API on PostgreSQL', () => {
  let db: TestDatabase;
  let h: Harness;
  let replicaClient: PostgresClient;
  let replica: SnapshotHolder;

  beforeAll(async () => {
    db = await createPostgresDatabase({ max: 6 });
    h = await startHarness({ db });
    replicaClient = db.openAnother({ max: 2 });
    replica = new SnapshotHolder({
      source: new ConfigRepository(replicaClient, h.secrets),
      feed: replicaClient,
      deps: h.secrets,
      clock: h.clock,
      reloadIntervalMs: 0,
      debounceMs: 10,
    });
    await replica.start();
  });

  afterAll(async () => {
    await replica?.stop();
    await replicaClient?.close();
    await h?.close();
    await db?.drop();
  });

  const decide = (holder: SnapshotHolder, key: string, nowMs: number) => {
    const result = authorizeRequest(
      { headers: { authorization: `Bearer ${key}` }, clientAddress: '10.0.0.1', provider: 'openai' },
      holder.current()!,
      nowMs,
      DEFAULT_KEY_HEADERS,
    );
    return result.kind === 'deny' ? result.code : 'authorized';
  };

  it('creates, reads and audits accounts and keys', async () => {
    const account = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'pg-acct', api_key: UPSTREAM_KEYS.good } });
    expect(account.status, account.text).toBe(201);
    expect(account.text).not.toContain(UPSTREAM_KEYS.good);
    expect((await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'pg-acct', api_key: UPSTREAM_KEYS.bad } })).status).toBe(409);
    const health = await h.api('POST', `/admin/providers/openai/accounts/${account.json.account.id}/check-health`);
    expect(health.json.outcome).toBe('success');
    const key = await h.api('POST', '/admin/keys', { body: { name: 'pg-key' } });
    expect(key.status).toBe(201);
    const audit = await h.api('GET', `/admin/audit?key_id=${key.json.key.id}`);
    expect(audit.json.items[0]).toMatchObject({ action: 'created', actor: TOKEN_NAME });
    expect((await h.api('GET', '/admin/keys/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('concurrent idempotent rotations on separate connections issue one key', async () => {
    const key = await h.api('POST', '/admin/keys', { body: { name: 'pg-idem' } });
    const id = key.json.key.id;
    const responses = await Promise.all(
      Array.from({ length: 4 }, () =>
        h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 30 }, headers: { 'idempotency-key': 'pg-concurrent' } }),
      ),
    );
    for (const response of responses) expect(response.status, response.text).toBe(200);
    expect(new Set(responses.map((r) => r.json.api_key)).size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'false')).toHaveLength(1);
    const rotations = await h.api('GET', `/admin/audit?key_id=${id}&action=rotated`);
    expect(rotations.json.items).toHaveLength(1);
  });

  it('a rotation reaches another replica within 2 s and the old key stops exactly at the grace end', async () => {
    await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'pg-pool', api_key: UPSTREAM_KEYS.good } });
    const created = await h.api('POST', '/admin/keys', { body: { name: 'pg-grace' } });
    const oldKey: string = created.json.api_key;
    await eventually(() => decide(replica, oldKey, h.clock.nowMs()) === 'authorized', 2_000);
    const rotated = await h.api('POST', `/admin/keys/${created.json.key.id}/rotate`, { body: { grace_seconds: 120 } });
    const newKey: string = rotated.json.api_key;
    const graceEndsAtMs = Date.parse(rotated.json.key.previous_key_expires_at);
    await eventually(() => decide(replica, newKey, h.clock.nowMs()) === 'authorized', 2_000);
    expect(decide(replica, oldKey, graceEndsAtMs - 1)).toBe('authorized');
    expect(decide(replica, oldKey, graceEndsAtMs)).toBe('invalid_api_key');

    await h.api('POST', `/admin/keys/${created.json.key.id}/revoke`);
    await eventually(() => decide(replica, newKey, h.clock.nowMs()) === 'key_revoked', 2_000);
  });

  it('POST /admin/api-key-priority/reload makes another replica reload within 2 s', async () => {
    await h.api('PUT', '/admin/settings/priority.enabled', { body: { value: true } });
    await eventually(() => replica.current()?.prioritySettings.enabled === true, 2_000);
    const before = replica.version;
    const reload = await h.api('POST', '/admin/api-key-priority/reload');
    expect(reload.status, reload.text).toBe(200);
    await eventually(() => replica.version > before, 2_000);
  });
});
