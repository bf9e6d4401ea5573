// Key lifecycle through the admin API, checked where it matters: in the compiled snapshot and the decision core
// (authorizeRequest) and the engine, with a controllable clock. Rotation grace ends exactly when it says it does;
// revocation and soft delete reach every holder through the change feed; idempotent rotation never burns a second key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyLifecycle } from '../../src/admin/lifecycle.js';
import { DEFAULT_KEY_HEADERS } from '../../src/core/apikey.js';
import { authorizeRequest } from '../../src/core/request.js';
import type { Snapshot } from '../../src/core/types.js';
import { createLogger } from '../../src/log.js';
import { SnapshotHolder } from '../../src/snapshot/holder.js';
import { eventually, startHarness, UPSTREAM_KEYS, type Harness } from './harness.js';

let h: Harness;
/** A second replica: its own snapshot holder on the same database, fed by the same change feed. */
let replica: SnapshotHolder;

beforeAll(async () => {
  h = await startHarness();
  const created = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'pool-1', api_key: UPSTREAM_KEYS.good } });
  expect(created.status).toBe(201);
  replica = new SnapshotHolder({
    source: h.repository,
    feed: h.sql,
    deps: h.secrets,
    clock: h.clock,
    reloadIntervalMs: 0,
    debounceMs: 10,
  });
  await replica.start();
});

afterAll(async () => {
  await replica?.stop();
  await h?.close();
});

function authorize(snapshot: Snapshot | null, apiKey: string, nowMs: number) {
  if (!snapshot) throw new Error('no snapshot');
  return authorizeRequest({ headers: { authorization: `Bearer ${apiKey}` }, clientAddress: '10.0.0.1', provider: 'openai' }, snapshot, nowMs, DEFAULT_KEY_HEADERS);
}

function outcome(result: ReturnType<typeof authorize>): string {
  return result.kind === 'deny' ? result.code : 'authorized';
}

/** Waits until both replicas' snapshots answer `expected` for the key at nowMs. */
async function onEveryReplica(apiKey: string, nowMs: number, expected: string): Promise<void> {
  await eventually(
    () => outcome(authorize(h.holder.current(), apiKey, nowMs)) === expected && outcome(authorize(replica.current(), apiKey, nowMs)) === expected,
    2_000,
  );
}

async function createKey(name: string, extra: Record<string, unknown> = {}): Promise<{ id: string; apiKey: string }> {
  const response = await h.api('POST', '/admin/keys', { body: { name, ...extra } });
  expect(response.status, response.text).toBe(201);
  return { id: response.json.key.id, apiKey: response.json.api_key };
}

describe('rotation with a grace window', () => {
  it('keeps both keys working until the grace ends and stops the old one exactly then, on every replica', async () => {
    const { id, apiKey: oldKey } = await createKey('grace-svc');
    await onEveryReplica(oldKey, h.clock.nowMs(), 'authorized');

    const rotated = await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 3600 } });
    expect(rotated.status, rotated.text).toBe(200);
    const newKey: string = rotated.json.api_key;
    expect(newKey).not.toBe(oldKey);
    const graceEndsAtMs = Date.parse(rotated.json.key.previous_key_expires_at);
    expect(graceEndsAtMs).toBeGreaterThan(Date.now() + 3_500_000);

    // The change feed brings the rotation to both replicas.
    await onEveryReplica(newKey, graceEndsAtMs - 1, 'authorized');
    for (const holder of [h.holder, replica]) {
      expect(outcome(authorize(holder.current(), oldKey, graceEndsAtMs - 1))).toBe('authorized');
      expect(outcome(authorize(holder.current(), oldKey, graceEndsAtMs))).toBe('invalid_api_key');
      expect(outcome(authorize(holder.current(), newKey, graceEndsAtMs))).toBe('authorized');
      expect(outcome(authorize(holder.current(), newKey, graceEndsAtMs + 86_400_000))).toBe('authorized');
    }

    // The same through the engine, driven by the controllable clock.
    const savedMs = h.clock.ms;
    try {
      const request = (key: string) => ({ headers: { authorization: `Bearer ${key}` }, clientAddress: '10.0.0.1', provider: 'openai' });
      h.clock.ms = graceEndsAtMs - 1;
      const before = await h.engine.decide(request(oldKey));
      expect(before.decision.kind).toBe('allow');
      if (before.ticket) h.engine.release(before.ticket);
      h.clock.ms = graceEndsAtMs;
      const at = await h.engine.decide(request(oldKey));
      expect(at.decision.kind === 'deny' && at.decision.code).toBe('invalid_api_key');
      const fresh = await h.engine.decide(request(newKey));
      expect(fresh.decision.kind).toBe('allow');
      if (fresh.ticket) h.engine.release(fresh.ticket);
    } finally {
      h.clock.ms = savedMs;
    }
  });

  it('grace 0 stops the old key at once', async () => {
    const { id, apiKey: oldKey } = await createKey('grace-zero');
    const rotated = await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 0 } });
    expect(rotated.json.key.previous_key_expires_at).toBeNull();
    await onEveryReplica(rotated.json.api_key, h.clock.nowMs(), 'authorized');
    expect(outcome(authorize(h.holder.current(), oldKey, h.clock.nowMs()))).toBe('invalid_api_key');
  });
});

describe('idempotent rotation', () => {
  it('returns the same new key for a retried request and audits one rotation', async () => {
    const { id } = await createKey('idem-svc');
    const headers = { 'idempotency-key': 'rotate-idem-svc-1' };
    const first = await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 60 }, headers });
    expect(first.status, first.text).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBe('false');
    const retry = await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 60 }, headers });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.json.api_key).toBe(first.json.api_key);

    const concurrent = await Promise.all(
      [1, 2, 3].map(() => h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 60 }, headers: { 'idempotency-key': 'rotate-idem-svc-2' } })),
    );
    const issued = new Set(concurrent.map((r) => r.json.api_key));
    expect(issued.size).toBe(1);
    expect(issued.has(first.json.api_key)).toBe(false);

    const audit = await h.api('GET', `/admin/audit?key_id=${id}&action=rotated`);
    expect(audit.json.items).toHaveLength(2);

    const reused = await h.api('POST', `/admin/keys/${id}/rotate`, { body: { grace_seconds: 120 }, headers });
    expect(reused.status).toBe(422);
    expect(reused.json.error).toMatchObject({ code: 'idempotency_key_reused', field: 'idempotency-key' });

    // The remembered answer is stored encrypted; neither the key nor the idempotency key is readable in the table.
    const rows = await h.sql.query('SELECT * FROM admin_idempotency_keys');
    const dump = JSON.stringify(rows);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(dump).not.toContain(first.json.api_key);
    expect(dump).not.toContain('rotate-idem-svc-1');
  });

  it('remembers nothing when the rotation failed (unknown or revoked key)', async () => {
    const unknown = await h.api('POST', '/admin/keys/00000000-0000-4000-8000-000000000001/rotate', { headers: { 'idempotency-key': 'nothing-1' } });
    expect(unknown.status).toBe(404);
    const { id } = await createKey('idem-revoked');
    await h.api('POST', `/admin/keys/${id}/revoke`);
    const revoked = await h.api('POST', `/admin/keys/${id}/rotate`, { headers: { 'idempotency-key': 'nothing-2' } });
    expect(revoked.status).toBe(409);
    const rows = await h.sql.query('SELECT count(*)::int AS n FROM admin_idempotency_keys WHERE resource_id = $1', [id]);
    expect(rows[0]).toEqual({ n: 0 });
  });
});

describe('revocation, expiry and soft delete reach every replica', () => {
  it('revoke -> key_revoked, delete -> invalid_api_key, expiry -> key_expired', async () => {
    const revoked = await createKey('reach-revoke');
    await onEveryReplica(revoked.apiKey, h.clock.nowMs(), 'authorized');
    expect((await h.api('POST', `/admin/keys/${revoked.id}/revoke`)).status).toBe(200);
    await onEveryReplica(revoked.apiKey, h.clock.nowMs(), 'key_revoked');

    const deleted = await createKey('reach-delete');
    await onEveryReplica(deleted.apiKey, h.clock.nowMs(), 'authorized');
    expect((await h.api('DELETE', `/admin/keys/${deleted.id}`)).status).toBe(204);
    await onEveryReplica(deleted.apiKey, h.clock.nowMs(), 'invalid_api_key');

    const expiring = await createKey('reach-expiry', { expires_in: '1h' });
    const row = await h.api('GET', `/admin/keys/${expiring.id}`);
    const expiresAtMs = Date.parse(row.json.key.expires_at);
    await onEveryReplica(expiring.apiKey, expiresAtMs - 1, 'authorized');
    expect(outcome(authorize(replica.current(), expiring.apiKey, expiresAtMs))).toBe('key_expired');
  });
});

describe('rotation overdue sweep', () => {
  it('counts overdue keys in a metric and revokes them only when auto-revoke is on', async () => {
    const { id } = await createKey('overdue-svc', { rotate_after_days: 1 });
    const logger = createLogger('silent');
    const savedMs = h.clock.ms;
    try {
      h.clock.advance(2 * 86_400_000);
      const report = await new KeyLifecycle(h.deps, logger).sweep();
      expect(report.overdue.map((k) => k.id)).toContain(id);
      expect(report.revoked).toEqual([]);
      const metrics = await h.api('GET', '/metrics');
      expect(metrics.text).toMatch(new RegExp(`^keypool_keys_rotation_overdue ${report.overdue.length}$`, 'm'));

      const autoRevoking = new KeyLifecycle({ ...h.deps, autoRevokeOverdue: true }, logger);
      const revokedReport = await autoRevoking.sweep();
      expect(revokedReport.revoked).toContain(id);
      const key = await h.api('GET', `/admin/keys/${id}`);
      expect(key.json.key.status).toBe('revoked');
      const audit = await h.api('GET', `/admin/audit?key_id=${id}&action=revoked`);
      expect(audit.json.items[0]).toMatchObject({ actor: 'keypool' });
      const after = await h.api('GET', '/metrics');
      expect(after.text).toMatch(/^keypool_keys_rotation_overdue 0$/m);
      expect(after.text).toMatch(/^keypool_keys_auto_revoked_total [1-9]/m);
    } finally {
      h.clock.ms = savedMs;
    }
  });
});

describe('quota_exhausted re-probe (KEYPOOL_QUOTA_REPROBE_MS)', () => {
  it('enables an account disabled as quota_exhausted once the interval passed, audited and counted; never one an operator disabled', async () => {
    const logger = createLogger('silent');
    const create = async (name: string): Promise<string> => {
      const created = await h.api('POST', '/admin/providers/openai/accounts', { body: { name, api_key: UPSTREAM_KEYS.good } });
      expect(created.status, created.text).toBe(201);
      return created.json.account.id as string;
    };
    const exhausted = await create('reprobe-credit');
    const byHand = await create('reprobe-by-hand');
    await h.repository.markAccountInvalid(exhausted, 'quota_exhausted: the provider says the credit is used up (insufficient_quota)', 'test', 'disabled');
    expect((await h.api('POST', `/admin/providers/openai/accounts/${byHand}/disable`, { body: { reason: 'paused by hand' } })).status).toBe(200);
    const status = async (id: string) => (await h.repository.accounts.get(id)).status;
    expect(await status(exhausted)).toBe('disabled');

    const savedMs = h.clock.ms;
    try {
      // Off (the default): nothing is ever enabled.
      h.clock.ms = Date.now() + 30 * 86_400_000;
      expect((await new KeyLifecycle(h.deps, logger).sweep()).reprobed).toEqual([]);

      const reprobing = new KeyLifecycle({ ...h.deps, quotaReprobeMs: 3_600_000 }, logger);
      // Disabled just now: not yet.
      h.clock.ms = Date.now();
      expect((await reprobing.sweep()).reprobed).toEqual([]);
      h.clock.ms = Date.now() + 2 * 3_600_000;
      expect((await reprobing.sweep()).reprobed).toEqual([exhausted]);
      expect(await status(exhausted)).toBe('active');
      expect(await status(byHand)).toBe('disabled');
      // A second sweep (another replica) finds nothing left to do.
      expect((await reprobing.sweep()).reprobed).toEqual([]);

      const audit = await h.api('GET', '/admin/audit?action=account_enabled');
      const rows = (audit.json.items as Array<{ actor: string; metadata: Record<string, unknown> }>).filter((row) => row.metadata['accountId'] === exhausted);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ actor: 'keypool', metadata: { previous: 'disabled', previousReason: expect.stringMatching(/^quota_exhausted:/) } });
      expect((await h.api('GET', '/metrics')).text).toMatch(/^keypool_quota_reprobes_total 1$/m);
      // The change feed brings the account back into the pool.
      await eventually(() => h.holder.current()?.pools.get('openai')?.accounts.some((a) => a.id === exhausted) === true, 2_000);
    } finally {
      h.clock.ms = savedMs;
    }
  });
});
