// One contract for the configuration store, run against PGlite (repository.pglite.test.ts) and PostgreSQL
// (repository.postgres.test.ts). Each run gets its own database from test/helpers/db.ts.
import { randomBytes, randomUUID } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY_PATTERN, digestKey } from '../../src/core/apikey.js';
import { validatePattern } from '../../src/core/priority/index.js';
import { generateClientKey } from '../../src/secrets/client-key.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { compileSnapshot } from '../../src/snapshot/compile.js';
import { ConflictError, InvalidInputError, NotFoundError, StateError } from '../../src/stores/errors.js';
import { applyDemoSeed, findSqlDir, migrate, MigrationError, pendingMigrations } from '../../src/stores/migrate.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import type { TestDatabase } from '../helpers/db.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

export interface ContractTarget {
  readonly name: 'pglite' | 'postgres';
  /** A fresh, migrated database. */
  open(): Promise<TestDatabase>;
  /** A second, independent writer to the same database (a second pool on PostgreSQL; the same client on PGlite). */
  secondWriter(db: TestDatabase): SqlClient;
}

const ACTOR = 'contract-test';

function unique(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function repositoryContract(target: ContractTarget): void {
  describe(`config store contract (${target.name})`, () => {
    let db: TestDatabase;
    let sql: SqlClient;
    const v1Spec = Keyring.generateSpec('v1');
    const v2Spec = Keyring.generateSpec('v2');
    const keyring = Keyring.parse(v1Spec);
    const pepper = new Uint8Array(randomBytes(32));
    let repo: ConfigRepository;

    beforeAll(async () => {
      db = await target.open();
      sql = db.client;
      repo = new ConfigRepository(sql, { keyring, pepper });
    });

    afterAll(async () => {
      await db?.drop();
    });

    describe('migrations and seed', () => {
      it('are idempotent and recorded once', async () => {
        const again = await migrate(sql);
        expect(again.applied).toEqual([]);
        expect(again.alreadyApplied).toContain('0001_init.sql');
        expect(again.seeded).toEqual(['providers.sql']);
        const rows = await sql.query<{ version: string; n: number }>('SELECT version, count(*) OVER () AS n FROM schema_migrations');
        expect(rows.map((row) => row.version)).toContain('0001');
        expect(rows[0]!.n).toBe(rows.length);
        expect(await pendingMigrations(sql)).toEqual([]);
      });

      it('refuses an applied migration whose file changed', async () => {
        const dir = await mkdtemp(join(tmpdir(), 'kp-sql-'));
        try {
          await cp(findSqlDir(), dir, { recursive: true });
          await writeFile(join(dir, 'migrations', '0001_init.sql'), '-- edited\nSELECT 1;\n');
          await expect(migrate(sql, { sqlDir: dir })).rejects.toBeInstanceOf(MigrationError);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });

      it('seeds the six providers once', async () => {
        await migrate(sql);
        const providers = await repo.providers.list();
        const bySlug = Object.fromEntries(providers.map((p) => [p.slug, [p.authStyle, p.rateLimitDialect, p.defaultStrategy]]));
        expect(bySlug).toEqual({
          anthropic: ['x-api-key', 'anthropic', 'round-robin'],
          'azure-openai': ['api-key', 'azure', 'round-robin'],
          gemini: ['x-goog-api-key', 'gemini', 'round-robin'],
          openai: ['bearer', 'openai', 'round-robin'],
          'openai-compatible': ['bearer', 'openai', 'round-robin'],
          openrouter: ['bearer', 'openai', 'round-robin'],
        });
        expect((await repo.providers.getBySlug('openai')).displayName).toBe('OpenAI');
        await expect(repo.providers.getBySlug('nope')).rejects.toBeInstanceOf(NotFoundError);
      });

      it('seeds the priority settings', async () => {
        expect(await repo.settings.get()).toEqual({ enabled: false, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 });
      });
    });

    describe('accounts', () => {
      it('create stores the key encrypted and returns only its last 4 characters', async () => {
        const secret = `sk-test-${randomBytes(16).toString('hex')}`;
        const name = unique('acct');
        const row = await repo.accounts.create(
          { providerSlug: 'openai', name, apiKey: secret, weight: 3, tier: 1, rpmLimit: 60, tpmLimit: null, maxConcurrency: 4, tags: { team: 'a' } },
          ACTOR,
        );
        expect(row).toMatchObject({ providerSlug: 'openai', name, keyLast4: secret.slice(-4), keyVersion: 'v1', weight: 3, tier: 1 });
        expect(row.rpmLimit).toBe(60);
        expect(row.maxConcurrency).toBe(4);
        expect(row.tags).toEqual({ team: 'a' });
        expect(row.createdAt).toBeInstanceOf(Date);
        expect(JSON.stringify(row)).not.toContain(secret);
        const [stored] = await sql.query<Record<string, unknown>>('SELECT * FROM provider_accounts WHERE id = $1', [row.id]);
        expect(JSON.stringify(stored)).not.toContain(secret);
        expect(stored!.created_by).toBe(ACTOR);
        expect(keyring.decrypt({ ciphertext: String(stored!.encrypted_key), keyVersion: 'v1' }, row.id)).toBe(secret);
      });

      it('lists by provider, gets by id or name, updates, and audits', async () => {
        const name = unique('acct');
        const created = await repo.accounts.create({ providerSlug: 'anthropic', name, apiKey: 'sk-ant-0123456789abcdef' }, ACTOR);
        expect((await repo.accounts.list({ providerSlug: 'anthropic' })).map((a) => a.id)).toContain(created.id);
        expect((await repo.accounts.list({ providerSlug: 'openai' })).map((a) => a.id)).not.toContain(created.id);
        expect((await repo.accounts.get(name)).id).toBe(created.id);
        const updated = await repo.accounts.update(created.id, { weight: 5, apiKey: 'sk-ant-new-key-zzzz9999', tags: { x: 1 } }, 'editor');
        expect(updated).toMatchObject({ weight: 5, keyLast4: '9999', tags: { x: 1 } });
        expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
        const audit = await repo.audit.list({ action: 'account_updated', limit: 50 });
        const entry = audit.rows.find((r) => r.metadata.accountId === created.id);
        expect(entry?.actor).toBe('editor');
        expect(entry?.metadata.fields).toEqual(['weight', 'tags', 'apiKey']);
        expect(JSON.stringify(audit.rows)).not.toContain('sk-ant-new-key');
      });

      it('setStatus disables and enables with audit rows; same status is a no-op', async () => {
        const created = await repo.accounts.create({ providerSlug: 'openai', name: unique('acct'), apiKey: 'sk-status-000000000000' }, ACTOR);
        const disabled = await repo.accounts.setStatus(created.id, 'disabled', 'maintenance', 'ops');
        expect(disabled).toMatchObject({ status: 'disabled', disabledReason: 'maintenance' });
        await repo.accounts.setStatus(created.id, 'disabled', 'maintenance', 'ops');
        const enabled = await repo.accounts.setStatus(created.id, 'active', null, 'ops');
        expect(enabled).toMatchObject({ status: 'active', disabledReason: null });
        const actions = (await repo.audit.list({ limit: 200 })).rows.filter((r) => r.metadata.accountId === created.id).map((r) => r.action);
        expect(actions.filter((a) => a === 'account_disabled')).toHaveLength(1);
        expect(actions).toContain('account_enabled');
        expect(actions).toContain('account_created');
      });

      it('markAccountInvalid is idempotent and audited once', async () => {
        const created = await repo.accounts.create({ providerSlug: 'openai', name: unique('acct'), apiKey: 'sk-invalid-00000000000' }, ACTOR);
        await repo.markAccountInvalid(created.id, 'upstream 401', 'engine');
        await repo.markAccountInvalid(created.id, 'upstream 401', 'engine');
        await repo.markAccountInvalid('not-a-uuid', 'x', 'engine');
        expect(await repo.accounts.get(created.id)).toMatchObject({ status: 'invalid', disabledReason: 'upstream 401' });
        const rows = (await repo.audit.list({ action: 'account_invalidated', limit: 200 })).rows.filter((r) => r.metadata.accountId === created.id);
        expect(rows).toHaveLength(1);
      });

      it("markAccountInvalid as 'disabled' (credit used up) disables it once, audited account_disabled; enable brings it back", async () => {
        const created = await repo.accounts.create({ providerSlug: 'openai', name: unique('acct'), apiKey: 'sk-quota-0000000000000' }, ACTOR);
        await repo.markAccountInvalid(created.id, 'quota_exhausted: insufficient_quota', 'engine', 'disabled');
        await repo.markAccountInvalid(created.id, 'quota_exhausted: insufficient_quota', 'engine', 'disabled');
        expect(await repo.accounts.get(created.id)).toMatchObject({ status: 'disabled', disabledReason: 'quota_exhausted: insufficient_quota' });
        const rows = (await repo.audit.list({ action: 'account_disabled', limit: 200 })).rows.filter((r) => r.metadata.accountId === created.id);
        expect(rows).toHaveLength(1);
        expect(rows[0]?.actor).toBe('engine');
        await repo.accounts.setStatus(created.id, 'active', null, ACTOR);
        expect((await repo.accounts.get(created.id)).status).toBe('active');
      });

      it('names are unique among active accounts of a provider; soft delete hides and frees the name', async () => {
        const name = unique('dup');
        const first = await repo.accounts.create({ providerSlug: 'openai', name, apiKey: 'sk-dup-000000000000001' }, ACTOR);
        await expect(repo.accounts.create({ providerSlug: 'openai', name, apiKey: 'sk-dup-000000000000002' }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        // Same name under another provider is fine; by name it is now ambiguous.
        await repo.accounts.create({ providerSlug: 'gemini', name, apiKey: 'sk-dup-000000000000003' }, ACTOR);
        await expect(repo.accounts.get(name)).rejects.toBeInstanceOf(ConflictError);
        await repo.accounts.softDelete(first.id, ACTOR);
        await expect(repo.accounts.get(first.id)).rejects.toBeInstanceOf(NotFoundError);
        expect((await repo.accounts.list()).map((a) => a.id)).not.toContain(first.id);
        const again = await repo.accounts.create({ providerSlug: 'openai', name, apiKey: 'sk-dup-000000000000004' }, ACTOR);
        expect(again.id).not.toBe(first.id);
        await expect(repo.accounts.softDelete(first.id, ACTOR)).rejects.toBeInstanceOf(NotFoundError);
      });

      it('maps unknown providers and CHECK violations to typed errors', async () => {
        await expect(repo.accounts.create({ providerSlug: 'nope', name: 'x', apiKey: 'sk-000000000000000000' }, ACTOR)).rejects.toBeInstanceOf(NotFoundError);
        const error = await repo.accounts
          .create({ providerSlug: 'openai', name: unique('bad'), apiKey: 'sk-000000000000000000', weight: 0 }, ACTOR)
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidInputError);
        expect((error as InvalidInputError).field).toBe('weight');
        await expect(repo.accounts.get('7d1e0f4c-0000-4000-8000-000000000000')).rejects.toBeInstanceOf(NotFoundError);
      });
    });

    describe('system keys', () => {
      it('create returns the key once and stores only its digest and prefix', async () => {
        const name = unique('key');
        const { row, plaintextKey } = await repo.keys.create(
          { name, tenantId: 'acme', allowedIps: ['10.0.0.0/8', '2001:db8::/32'], expiresAt: new Date(Date.now() + 86_400_000), rotateAfterDays: 30 },
          ACTOR,
        );
        expect(plaintextKey).toMatch(CLIENT_KEY_PATTERN);
        expect(plaintextKey).toHaveLength(43);
        expect(row).toMatchObject({ name, tenantId: 'acme', status: 'active', allowedIps: ['10.0.0.0/8', '2001:db8::/32'], rotateAfterDays: 30 });
        expect(plaintextKey.startsWith(row.keyPrefix)).toBe(true);
        const [stored] = await sql.query<Record<string, unknown>>('SELECT * FROM system_api_keys WHERE id = $1', [row.id]);
        expect(stored!.key_hash).toBe(digestKey(pepper, plaintextKey));
        expect(JSON.stringify(stored)).not.toContain(plaintextKey);
        expect((await repo.keys.get(name)).id).toBe(row.id);
        const audit = (await repo.audit.list({ keyId: row.id })).rows;
        expect(audit.map((r) => r.action)).toEqual(['created']);
        expect(JSON.stringify(audit)).not.toContain(plaintextKey);
      });

      it('update changes fields, audits, and keeps names unique among active keys', async () => {
        const a = await repo.keys.create({ name: unique('key') }, ACTOR);
        const b = await repo.keys.create({ name: unique('key') }, ACTOR);
        const updated = await repo.keys.update(a.row.id, { allowedIps: ['192.168.0.0/16'], tenantId: null, expiresAt: null }, 'editor');
        expect(updated.allowedIps).toEqual(['192.168.0.0/16']);
        await expect(repo.keys.update(a.row.id, { name: b.row.name }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        await expect(repo.keys.create({ name: b.row.name }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        const audit = (await repo.audit.list({ keyId: a.row.id })).rows;
        expect(audit[0]).toMatchObject({ action: 'updated', actor: 'editor' });
      });

      it('rotate keeps the previous digest for the grace window; grace 0 drops it', async () => {
        const { row, plaintextKey: first } = await repo.keys.create({ name: unique('rot') }, ACTOR);
        const before = Date.now();
        const rotated = await repo.keys.rotate(row.id, 3_600_000, 'rotator');
        expect(rotated.plaintextKey).not.toBe(first);
        expect(rotated.row.lastRotatedAt).toBeInstanceOf(Date);
        expect(rotated.row.previousKeyExpiresAt!.getTime()).toBeGreaterThanOrEqual(before + 3_600_000 - 5_000);
        expect(rotated.row.previousKeyExpiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 3_600_000 + 5_000);
        const [stored] = await sql.query<{ key_hash: string; previous_key_hash: string }>(
          'SELECT key_hash, previous_key_hash FROM system_api_keys WHERE id = $1',
          [row.id],
        );
        expect(stored).toEqual({ key_hash: digestKey(pepper, rotated.plaintextKey), previous_key_hash: digestKey(pepper, first) });
        const again = await repo.keys.rotate(row.id, 0, 'rotator');
        expect(again.row.previousKeyExpiresAt).toBeNull();
        const audit = (await repo.audit.list({ keyId: row.id })).rows.map((r) => r.action);
        expect(audit).toEqual(['rotated', 'rotated', 'created']);
      });

      it('revoke is idempotent and blocks rotation; soft delete hides the key', async () => {
        const { row } = await repo.keys.create({ name: unique('rev') }, ACTOR);
        expect((await repo.keys.revoke(row.id, 'ops', 'leaked')).status).toBe('revoked');
        await repo.keys.revoke(row.id, 'ops');
        await expect(repo.keys.rotate(row.id, 0, 'ops')).rejects.toBeInstanceOf(StateError);
        expect((await repo.keys.list({ status: 'revoked' })).map((k) => k.id)).toContain(row.id);
        await repo.keys.softDelete(row.id, 'ops');
        await expect(repo.keys.get(row.id)).rejects.toBeInstanceOf(NotFoundError);
        expect((await repo.keys.list()).map((k) => k.id)).not.toContain(row.id);
        const audit = (await repo.audit.list({ keyId: row.id })).rows.map((r) => r.action);
        expect(audit).toEqual(['deleted', 'revoked', 'created']);
        // The name is free again.
        await repo.keys.create({ name: row.name }, ACTOR);
      });

      it('lists keys due for rotation at a given time', async () => {
        const { row } = await repo.keys.create({ name: unique('due'), rotateAfterDays: 10 }, ACTOR);
        const never = await repo.keys.create({ name: unique('due') }, ACTOR);
        const soon = (await repo.keys.list({ dueForRotation: true, now: new Date(Date.now() + 9 * 86_400_000) })).map((k) => k.id);
        const later = (await repo.keys.list({ dueForRotation: true, now: new Date(Date.now() + 11 * 86_400_000) })).map((k) => k.id);
        expect(soon).not.toContain(row.id);
        expect(later).toContain(row.id);
        expect(later).not.toContain(never.row.id);
      });

      it('touchKeys records last use without moving it backwards or waking the change feed', async () => {
        const { row } = await repo.keys.create({ name: unique('touch') }, ACTOR);
        const versionBefore = await repo.configVersion();
        const at = new Date('2030-01-01T00:00:00.000Z');
        await repo.touchKeys([row.id, 'garbage'], at);
        await repo.touchKeys([row.id], new Date('2029-01-01T00:00:00.000Z'));
        expect((await repo.keys.get(row.id)).lastUsedAt?.toISOString()).toBe(at.toISOString());
        expect(await repo.configVersion()).toBe(versionBefore);
      });
    });

    describe('priority mappings and settings', () => {
      it('create, list, update and soft delete mappings with audit rows', async () => {
        const pattern = unique('kp_team');
        const created = await repo.mappings.create(
          { pattern, matchType: 'prefix', priority: 2, tenantId: 't1', tenantName: 'Team One', tenantType: 'internal', description: null, enabled: true },
          ACTOR,
        );
        expect(created).toMatchObject({ pattern, matchType: 'prefix', priority: 2, tenantType: 'internal', enabled: true });
        expect((await repo.mappings.list()).map((m) => m.id)).toContain(created.id);
        const updated = await repo.mappings.update(created.id, { priority: 1, enabled: false }, 'editor');
        expect(updated).toMatchObject({ priority: 1, enabled: false });
        await expect(repo.mappings.create({ pattern, matchType: 'prefix', priority: 3 }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        await repo.mappings.softDelete(created.id, ACTOR);
        expect((await repo.mappings.list()).map((m) => m.id)).not.toContain(created.id);
        await expect(repo.mappings.get(created.id)).rejects.toBeInstanceOf(NotFoundError);
        await repo.mappings.create({ pattern, matchType: 'prefix', priority: 3 }, ACTOR);
        const actions = (await repo.audit.list({ limit: 500 })).rows.filter((r) => r.metadata.mappingId === created.id).map((r) => r.action);
        expect(actions).toEqual(['mapping_deleted', 'mapping_updated', 'mapping_created']);
      });

      it('stores, updates and clears a mapping window; one pattern may carry several windows', async () => {
        const pattern = unique('kp_window_');
        const day = { days: ['mon', 'tue', 'wed', 'thu', 'fri'] as const, start: '08:00', end: '20:00', timezone: 'Europe/Berlin' };
        const windowed = await repo.mappings.create({ pattern, matchType: 'prefix', priority: 7, window: { ...day, days: [...day.days] } }, ACTOR);
        expect(windowed.window).toEqual(day);
        const fallback = await repo.mappings.create({ pattern, matchType: 'prefix', priority: 3 }, ACTOR);
        expect(fallback.window).toBeNull();
        const night = await repo.mappings.create({ pattern, matchType: 'prefix', priority: 8, window: { days: ['sat'], start: '22:00', end: '06:00', timezone: 'UTC' } }, ACTOR);
        // The same pattern and window twice, or a second rule without a window, is a conflict.
        await expect(repo.mappings.create({ pattern, matchType: 'prefix', priority: 1, window: { ...day, days: [...day.days] } }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        await expect(repo.mappings.create({ pattern, matchType: 'prefix', priority: 1 }, ACTOR)).rejects.toBeInstanceOf(ConflictError);
        const moved = await repo.mappings.update(night.id, { window: { days: ['sun'], start: '00:00', end: '06:00', timezone: 'America/New_York' } }, ACTOR);
        expect(moved.window).toEqual({ days: ['sun'], start: '00:00', end: '06:00', timezone: 'America/New_York' });
        expect((await repo.mappings.get(night.id)).window).toEqual(moved.window);
        await expect(repo.mappings.update(night.id, { window: null }, ACTOR)).rejects.toBeInstanceOf(ConflictError); // fallback exists
        await repo.mappings.softDelete(fallback.id, ACTOR);
        expect((await repo.mappings.update(night.id, { window: null }, ACTOR)).window).toBeNull();
        const data = await repo.loadConfigData();
        expect(data.mappings.find((m) => m.id === windowed.id)?.window).toEqual(day);
        const audit = (await repo.audit.list({ limit: 500 })).rows.find((r) => r.metadata.mappingId === windowed.id && r.action === 'mapping_created');
        expect(audit?.metadata.window).toBe('mon-fri 08:00-20:00 Europe/Berlin');
      });

      it('refuses patterns the matcher would refuse', async () => {
        await expect(repo.mappings.create({ pattern: '(a+)+$', matchType: 'regex', priority: 1 }, ACTOR)).rejects.toBeInstanceOf(InvalidInputError);
        await expect(repo.mappings.create({ pattern: '', matchType: 'exact', priority: 1 }, ACTOR)).rejects.toBeInstanceOf(InvalidInputError);
      });

      it('settings set/get with audit; unknown names and bad values refused', async () => {
        await repo.settings.set('priority.enabled', true, 'ops');
        await repo.settings.set('default_priority', 3, 'ops');
        expect(await repo.settings.get()).toEqual({ enabled: true, defaultPriority: 3, queueMaxWaitMs: 0, queueMaxLength: 1000 });
        await expect(repo.settings.set('priority.nope', true, 'ops')).rejects.toBeInstanceOf(InvalidInputError);
        await expect(repo.settings.set('priority.enabled', 1, 'ops')).rejects.toBeInstanceOf(InvalidInputError);
        await expect(repo.settings.set('priority.default_priority', 10, 'ops')).rejects.toBeInstanceOf(InvalidInputError);
        const audit = (await repo.audit.list({ action: 'config_set' })).rows;
        expect(audit[0]!.metadata).toEqual({ name: 'priority.default_priority', value: 3, previous: 7 });
        await repo.settings.set('priority.enabled', false, 'ops');
        await repo.settings.set('priority.default_priority', 7, 'ops');
      });
    });

    describe('audit log', () => {
      it('is append-only', async () => {
        await repo.appendAudit([{ keyId: null, action: 'denied_ip', actor: 'engine', clientIp: '203.0.113.9', metadata: { path: '/v1' } }]);
        await expect(sql.query(`UPDATE api_key_audit_logs SET actor = 'x'`)).rejects.toThrow(/append-only/);
        await expect(sql.query(`DELETE FROM api_key_audit_logs`)).rejects.toThrow(/append-only/);
        await expect(sql.query(`TRUNCATE api_key_audit_logs`)).rejects.toThrow(/append-only/);
      });

      it('prunes only through keypool_prune_audit(): older rows go, newer stay, the pruning is audited', async () => {
        const { row } = await repo.keys.create({ name: unique('prune') }, ACTOR);
        const dayMs = 86_400_000;
        const now = Date.now();
        await repo.appendAudit([
          { keyId: row.id, action: 'denied_revoked', actor: 'engine', at: new Date(now - 100 * dayMs), occurrences: 7 },
          { keyId: row.id, action: 'denied_revoked', actor: 'engine', at: new Date(now - 91 * dayMs) },
          { keyId: row.id, action: 'denied_revoked', actor: 'engine', at: new Date(now - 89 * dayMs) },
        ]);
        const before = new Date(now - 90 * dayMs);
        // The function raises its flag only for its own transaction: a plain DELETE is still refused, before and after.
        await expect(sql.query(`DELETE FROM api_key_audit_logs WHERE created_at < $1`, [before])).rejects.toThrow(/append-only/);
        const deleted = await repo.audit.prune(before, 'ops');
        expect(deleted).toBeGreaterThanOrEqual(2);
        const left = await repo.audit.list({ keyId: row.id, limit: 100 });
        expect(left.rows.filter((r) => r.action === 'denied_revoked').map((r) => r.createdAt.getTime())).toEqual([now - 89 * dayMs]);
        const [pruned] = (await repo.audit.list({ action: 'audit_pruned', limit: 1 })).rows;
        expect(pruned).toMatchObject({ actor: 'ops', keyId: null, occurrences: 1 });
        expect(pruned!.metadata['deleted']).toBe(deleted);
        await expect(sql.query(`DELETE FROM api_key_audit_logs WHERE created_at < $1`, [new Date(now)])).rejects.toThrow(/append-only/);
        // UPDATE stays refused, prune flag or not.
        await expect(sql.query(`UPDATE api_key_audit_logs SET actor = 'x'`)).rejects.toThrow(/append-only/);
      });

      it('stores how many identical denials a row stands for', async () => {
        const { row } = await repo.keys.create({ name: unique('occ') }, ACTOR);
        await repo.appendAudit([{ keyId: row.id, action: 'denied_ip', actor: 'engine', clientIp: '203.0.113.5', occurrences: 250 }]);
        const [stored] = (await repo.audit.list({ keyId: row.id })).rows;
        expect(stored!.occurrences).toBe(250);
      });

      it('appends batches and pages newest first with filters', async () => {
        const { row } = await repo.keys.create({ name: unique('aud') }, ACTOR);
        const base = Date.now() - 60_000;
        await repo.appendAudit(
          Array.from({ length: 5 }, (_, i) => ({
            keyId: row.id,
            action: 'denied_ip' as const,
            actor: 'engine',
            clientIp: `198.51.100.${i}`,
            metadata: { i },
            at: new Date(base + i * 1000),
          })),
        );
        const first = await repo.audit.list({ keyId: row.id, action: 'denied_ip', limit: 2 });
        expect(first.rows.map((r) => r.metadata.i)).toEqual([4, 3]);
        expect(first.rows[0]).toMatchObject({ keyId: row.id, clientIp: '198.51.100.4', actor: 'engine' });
        const second = await repo.audit.list({ keyId: row.id, action: 'denied_ip', limit: 2, cursor: first.nextCursor! });
        expect(second.rows.map((r) => r.metadata.i)).toEqual([2, 1]);
        const third = await repo.audit.list({ keyId: row.id, action: 'denied_ip', limit: 2, cursor: second.nextCursor! });
        expect(third.rows.map((r) => r.metadata.i)).toEqual([0]);
        expect(third.nextCursor).toBeNull();
        const since = await repo.audit.list({ keyId: row.id, action: 'denied_ip', since: new Date(base + 3000) });
        expect(since.rows).toHaveLength(2);
      });
    });

    describe('usage', () => {
      it('adds counters additively from two writers', async () => {
        const account = await repo.accounts.create({ providerSlug: 'openai', name: unique('usage'), apiKey: 'sk-usage-0000000000000' }, ACTOR);
        const other = new ConfigRepository(target.secondWriter(db), { keyring, pepper });
        const bucketStart = new Date('2030-05-05T10:07:00.000Z');
        const bucket = (requests: number) => ({
          accountId: account.id,
          bucketStart: new Date(bucketStart.getTime() + 12_345),
          requests,
          successes: requests - 1,
          rateLimited: 1,
          clientErrors: 0,
          serverErrors: 0,
          inputTokens: 100 * requests,
          outputTokens: 10 * requests,
          cachedInputTokens: 4 * requests,
          cacheCreationInputTokens: requests,
          latencyMsSum: 50 * requests,
        });
        await Promise.all([
          ...Array.from({ length: 5 }, () => repo.addUsage([bucket(2), bucket(3)])),
          ...Array.from({ length: 5 }, () => other.addUsage([bucket(1)])),
          repo.addUsage([{ ...bucket(7), accountId: '00000000-0000-4000-8000-000000000000' }]),
        ]);
        const rows = await repo.usage.query({ accountId: account.id, from: bucketStart, to: new Date(bucketStart.getTime() + 60_000) });
        expect(rows).toHaveLength(1);
        expect(rows[0]).toEqual({
          accountId: account.id,
          bucketStart,
          requests: 30,
          successes: 15,
          rateLimited: 15,
          clientErrors: 0,
          serverErrors: 0,
          inputTokens: 3000,
          outputTokens: 300,
          cachedInputTokens: 120,
          cacheCreationInputTokens: 30,
          latencyMsSum: 1500,
        });
      });

      it('adds token buckets additively per key, tenant and provider; totals per tenant or key; prunes', async () => {
        const other = new ConfigRepository(target.secondWriter(db), { keyring, pepper });
        const keyId = randomUUID();
        const tenantId = unique('tok').replace(/[^A-Za-z0-9._-]/g, '').slice(0, 60);
        const minute = new Date('2030-06-06T10:07:00.000Z');
        const bucket = (provider: string, inputTokens: number, costUsd: number) => ({
          keyId,
          tenantId,
          provider,
          bucketStart: new Date(minute.getTime() + 5_000),
          requests: 1,
          estimatedRequests: 0,
          inputTokens,
          outputTokens: 2,
          cachedInputTokens: 1,
          cacheCreationInputTokens: 0,
          costUsd,
        });
        await Promise.all([
          ...Array.from({ length: 4 }, () => repo.addTokenUsage([bucket('openai', 10, 0.000125), bucket('anthropic', 5, 0.5)])),
          ...Array.from({ length: 4 }, () => other.addTokenUsage([bucket('openai', 10, 0.000125)])),
          // Not a key id, not a tenant id: dropped, the rest written.
          repo.addTokenUsage([{ ...bucket('openai', 999, 0), keyId: 'nope' }, { ...bucket('openai', 999, 0), tenantId: 'a b' }]),
        ]);
        const range = { from: minute, to: new Date(minute.getTime() + 60_000) };
        expect(await repo.tokenUsage.totals({ tenantId, ...range })).toEqual({
          requests: 12,
          estimatedRequests: 0,
          inputTokens: 100,
          outputTokens: 24,
          cachedInputTokens: 12,
          cacheCreationInputTokens: 0,
          costUsd: 2.001,
        });
        expect((await repo.tokenUsage.totals({ keyId, ...range })).inputTokens).toBe(100);
        expect((await repo.tokenUsage.totals({ tenantId, from: range.to, to: new Date(range.to.getTime() + 60_000) })).requests).toBe(0);
        expect(await repo.tokenUsage.prune(new Date(minute.getTime() + 1))).toBeGreaterThanOrEqual(2);
        expect((await repo.tokenUsage.totals({ tenantId, ...range })).requests).toBe(0);
      });
    });

    describe('snapshot data', () => {
      it('loadConfigData returns digests, encrypted secrets, mappings and settings in one read', async () => {
        const account = await repo.accounts.create({ providerSlug: 'azure-openai', name: unique('load'), apiKey: 'azure-secret-key-0001' }, ACTOR);
        const { row, plaintextKey: old } = await repo.keys.create({ name: unique('load'), allowedIps: ['10.0.0.0/8'] }, ACTOR);
        const rotated = await repo.keys.rotate(row.id, 600_000, ACTOR);
        const mapping = await repo.mappings.create({ pattern: unique('exact'), matchType: 'exact', priority: 0 }, ACTOR);
        const data = await repo.loadConfigData();
        expect(data.readAt).toBeInstanceOf(Date);
        expect(data.configVersion).toBeGreaterThan(0);
        expect(data.providers).toHaveLength(6);
        const storedAccount = data.accounts.find((a) => a.id === account.id)!;
        expect(storedAccount.encryptedKey).toBeTypeOf('string');
        expect(keyring.decrypt({ ciphertext: storedAccount.encryptedKey, keyVersion: storedAccount.keyVersion }, account.id)).toBe('azure-secret-key-0001');
        const storedKey = data.keys.find((k) => k.id === row.id)!;
        expect(storedKey.keyHash).toBe(digestKey(pepper, rotated.plaintextKey));
        expect(storedKey.previousKeyHash).toBe(digestKey(pepper, old));
        expect(storedKey.previousKeyExpiresAt).toBeInstanceOf(Date);
        expect(data.mappings.map((m) => m.id)).toContain(mapping.id);
        expect(data.settings).toEqual({ enabled: false, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 });

        const snapshot = compileSnapshot(data, { keyring, pepper }, 1, Date.now());
        expect(snapshot.keysByDigest.get(snapshot.digestKey(rotated.plaintextKey))).toMatchObject({ graceEndsAtMs: null });
        expect(snapshot.keysByDigest.get(snapshot.digestKey(old))?.graceEndsAtMs).toBe(storedKey.previousKeyExpiresAt!.getTime());
        expect(snapshot.pools.get('azure-openai')?.accounts.find((a) => a.id === account.id)?.secret).toBe('azure-secret-key-0001');
        expect(snapshot.warnings).toEqual([]);
      });

      it('config writes bump config_version; usage and audit writes do not', async () => {
        const before = await repo.configVersion();
        await repo.mappings.create({ pattern: unique('cv'), matchType: 'suffix', priority: 4 }, ACTOR);
        const afterMapping = await repo.configVersion();
        expect(afterMapping).toBeGreaterThan(before);
        await repo.appendAudit([{ keyId: null, action: 'denied_expired', actor: 'engine' }]);
        expect(await repo.configVersion()).toBe(afterMapping);
      });

      it('the change feed notifies keypool_config with the table name', async () => {
        const listener = target.name === 'postgres' ? target.secondWriter(db) : sql;
        const payloads: string[] = [];
        const unlisten = await listener.listen('keypool_config', (payload) => payloads.push(payload));
        try {
          await repo.keys.create({ name: unique('feed') }, ACTOR);
          await repo.settings.set('priority.default_priority', 7, ACTOR);
          await waitFor(() => payloads.includes('system_api_keys') && payloads.includes('api_key_priority_config'));
        } finally {
          await unlisten();
        }
      });
    });

    describe('examples/seed-demo.sql', () => {
      it('applies twice, and every mapping passes the write-time pattern rules', async () => {
        await applyDemoSeed(sql);
        await applyDemoSeed(sql);
        const demoPatterns = ['kp_team-a_', 'kp_batch-', '-partner_', '^kp_vip[0-9]{2}_'];
        const mappings = (await repo.mappings.list()).filter((m) => demoPatterns.includes(m.pattern));
        expect(mappings).toHaveLength(demoPatterns.length);
        for (const mapping of mappings) expect(validatePattern(mapping.matchType, mapping.pattern)).toBeNull();
        expect(await repo.settings.get()).toEqual({ enabled: true, defaultPriority: 5, queueMaxWaitMs: 0, queueMaxLength: 1000 });
        // The keys the seed file's comment tells a user to create match the mapping meant for them.
        const data = await repo.loadConfigData();
        const demo = { ...data, mappings: data.mappings.filter((m) => demoPatterns.includes(m.pattern)) };
        const snapshot = compileSnapshot(demo, { keyring, pepper }, 1, Date.now());
        const cases: Array<[string | null, number, string | null]> = [
          [null, 5, null],
          ['team-a', 2, 'team-a'],
          ['batch-nightly', 9, 'batch'],
          ['acme-partner', 4, 'partners'],
          ['vip01', 0, 'vip'],
        ];
        for (const [prefix, priority, tenantId] of cases) {
          expect(snapshot.priority.resolve(generateClientKey(prefix), Date.now()), String(prefix)).toMatchObject({ priority, tenantId });
        }
        await repo.settings.set('priority.default_priority', 7, ACTOR);
        await repo.settings.set('priority.enabled', false, ACTOR);
      });
    });

    describe('key ring rotation', () => {
      it('reencryptAll moves every account to the current version', async () => {
        const names = [unique('re'), unique('re')];
        for (const name of names) await repo.accounts.create({ providerSlug: 'gemini', name, apiKey: `gemini-key-${name}` }, ACTOR);
        const v2 = Keyring.parse(`${v2Spec},${v1Spec}`);
        const rotatedRepo = new ConfigRepository(sql, { keyring: v2, pepper });
        const result = await rotatedRepo.accounts.reencryptAll('ops');
        expect(result.currentVersion).toBe('v2');
        expect(result.failed).toEqual([]);
        expect(result.reencrypted).toBeGreaterThanOrEqual(2);
        expect((await rotatedRepo.accounts.list()).every((a) => a.keyVersion === 'v2')).toBe(true);
        expect((await rotatedRepo.accounts.reencryptAll('ops')).reencrypted).toBe(0);
        // Without v1 in the ring, everything still decrypts.
        const onlyV2 = Keyring.parse(v2Spec);
        const snapshot = compileSnapshot(await repo.loadConfigData(), { keyring: onlyV2, pepper }, 1, Date.now());
        expect(snapshot.warnings).toEqual([]);
        expect(snapshot.pools.get('gemini')?.accounts.map((a) => a.secret)).toEqual(expect.arrayContaining(names.map((n) => `gemini-key-${n}`)));
        // The old ring alone can no longer read them: those accounts are left out with a warning, not a failure.
        const stale = compileSnapshot(await repo.loadConfigData(), { keyring, pepper }, 1, Date.now());
        expect(stale.warnings.length).toBeGreaterThanOrEqual(2);
        expect(stale.warnings[0]!.kind).toBe('account_secret');
        expect(JSON.stringify(stale.warnings)).not.toContain('gemini-key-');
        // Later tests keep using the original repository: put v1 back as current.
        const back = Keyring.parse(`${v1Spec},${v2Spec}`);
        await new ConfigRepository(sql, { keyring: back, pepper }).accounts.reencryptAll('ops');
      });
    });
  });

}

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
