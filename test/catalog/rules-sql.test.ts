// The SQL CHECK constraints agree with src/catalog/rules.ts: at each rule's boundaries, a value the catalog's
// validation accepts is accepted by the database and a value it refuses is refused, on PGlite and PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateNewAccount } from '../../src/catalog/accounts/schema.js';
import { validateNewKey } from '../../src/catalog/keys/schema.js';
import { validateNewMapping } from '../../src/catalog/mappings/schema.js';
import { isProviderSlug } from '../../src/catalog/rules.js';
import { validateSetting } from '../../src/catalog/settings/schema.js';
import { validateNewTenant } from '../../src/catalog/tenants/schema.js';
import type { Validated } from '../../src/catalog/validated.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import { createPgliteDatabase, createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';

const NOW_MS = Date.parse('2026-01-01T00:00:00Z');
/** A distinct well-formed digest per case (key_hash is unique). */
const hashFor = (n: number): string => n.toString(16).padStart(64, '0');

interface Case {
  readonly rule: string;
  readonly value: unknown;
  /** What the catalog says. */
  readonly valid: boolean;
  /** Writes the value with plain SQL; throws when the database refuses it. */
  readonly write: (sql: SqlClient, n: number) => Promise<unknown>;
}

const ok = (result: Validated<unknown>): boolean => result.ok;

function cases(): Case[] {
  const out: Case[] = [];
  const add = (rule: string, values: readonly unknown[], valid: (v: unknown) => boolean, write: Case['write'] extends (s: SqlClient, n: number) => infer R ? (sql: SqlClient, n: number, value: unknown) => R : never): void => {
    for (const value of values) out.push({ rule, value, valid: valid(value), write: (sql, n) => write(sql, n, value) });
  };
  const account = (fields: Record<string, unknown>) => ok(validateNewAccount({ providerSlug: 'openai', name: 'a', apiKey: 'sk-0123456789abcdef', ...fields }));
  const insertAccount = (column: string) => (sql: SqlClient, n: number, value: unknown) =>
    sql.query(
      `INSERT INTO provider_accounts (provider_id, encrypted_key, key_version, key_last4, name${column === 'name' ? '' : `, ${column}`})
       SELECT id, 'x', 'v1', '', $1${column === 'name' ? '' : ', $2'} FROM providers WHERE slug = 'openai'`,
      column === 'name' ? [value] : [`rules-${n}`, value],
    );
  add('provider slug', ['a', 'my-llm', 'azure-openai-eu', 'a'.repeat(64), 'a'.repeat(65), 'a-', '-a', 'Open', 'a_b'], isProviderSlug, (sql, _n, value) =>
    sql.query(`INSERT INTO providers (slug, display_name, auth_style, rate_limit_dialect) VALUES ($1, 'x', 'bearer', 'none')`, [value]),
  );
  add('account weight', [0, 1, 1000, 1001], (v) => account({ weight: v }), insertAccount('weight'));
  add('account tier', [-1, 0, 100, 101], (v) => account({ tier: v }), insertAccount('priority_tier'));
  add('account name', ['n'.repeat(100), 'n'.repeat(101)], (v) => account({ name: v }), insertAccount('name'));
  add(
    'account models',
    [[], ['gpt-4o'], ['gpt-4o*', 'o1', 'ft:gpt-4o-mini:acme::x1', 'meta-llama/Llama-3-70b'], ['m'.repeat(128)], ['m'.repeat(128) + '*'], ['m'.repeat(129)], ['*'], ['gpt-*-mini'], ['a b'], [''], ['a\nb'], Array.from({ length: 64 }, (_, i) => `m${i}`), Array.from({ length: 65 }, (_, i) => `m${i}`)],
    (v) => account({ models: v }),
    (sql, n, value) =>
      sql.query(
        `INSERT INTO provider_accounts (provider_id, encrypted_key, key_version, key_last4, name, models)
         SELECT id, 'x', 'v1', '', $1, $2::text[] FROM providers WHERE slug = 'openai'`,
        [`rules-${n}`, value],
      ),
  );
  add('account scope', ['a', 'openai-org-acme/project-x', 's'.repeat(128), 's'.repeat(129), '/a', 'a b', '-a', 'ws:1@anthropic'], (v) => account({ scope: v }), insertAccount('scope'));
  const key = (fields: Record<string, unknown>) => ok(validateNewKey({ name: 'k', ...fields }, NOW_MS));
  const insertKey = (column: string) => (sql: SqlClient, n: number, value: unknown) =>
    column === 'name'
      ? sql.query(`INSERT INTO system_api_keys (name, key_prefix, key_hash) VALUES ($1, 'kp_', $2)`, [value, hashFor(n)])
      : sql.query(`INSERT INTO system_api_keys (name, key_prefix, key_hash, ${column}) VALUES ($1, 'kp_', $2, $3)`, [`rules-${n}`, hashFor(n), value]);
  add('key name', ['n'.repeat(100), 'n'.repeat(101)], (v) => key({ name: v }), insertKey('name'));
  add('key tenant id', ['a', 'team-a.prod_1', 't'.repeat(64), 't'.repeat(65), 'a b', 'a/b'], (v) => key({ tenantId: v }), insertKey('tenant_id'));
  add('key rotate_after_days', [0, 1, 3650, 3651], (v) => key({ rotateAfterDays: v }), insertKey('rotate_after_days'));
  const mapping = (fields: Record<string, unknown>) => ok(validateNewMapping({ pattern: 'p', matchType: 'exact', priority: 1, ...fields }));
  const insertMapping = (column: string) => (sql: SqlClient, n: number, value: unknown) =>
    column === 'pattern'
      ? sql.query(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'exact', 1)`, [value])
      : sql.query(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority, ${column}) VALUES ($1, 'exact', 1, $2)`, [`rules-${n}`, value]);
  add('mapping priority', [-1, 0, 9, 10], (v) => mapping({ priority: v }), (sql, n, value) =>
    sql.query(`INSERT INTO api_key_priority_mappings (pattern, match_type, priority) VALUES ($1, 'exact', $2)`, [`rules-${n}`, value]),
  );
  add('mapping pattern length', ['p'.repeat(256), 'p'.repeat(257)], (v) => mapping({ pattern: v }), insertMapping('pattern'));
  add('mapping tenant id', ['a', 't'.repeat(64), 't'.repeat(65), 'a b'], (v) => mapping({ tenantId: v }), insertMapping('tenant_id'));
  // Mapping windows: the zone list itself is the catalog's check only (SQL checks a zone name's shape), so the cases
  // below stay on what both check: days, times, start != end, all-or-none, zone name length and characters.
  const WINDOW = { days: ['mon'], start: '08:00', end: '20:00', timezone: 'UTC' };
  const withWindow = (window: Record<string, unknown>) => mapping({ window: { ...WINDOW, ...window } });
  const insertWindow = (sql: SqlClient, n: number, window: Record<string, unknown>) =>
    sql.query(
      `INSERT INTO api_key_priority_mappings (pattern, match_type, priority, window_days, window_start, window_end, window_timezone)
       VALUES ($1, 'exact', 1, $2::text[], $3, $4, $5)`,
      [`rules-${n}`, window['days'] ?? null, window['start'] ?? null, window['end'] ?? null, window['timezone'] ?? null],
    );
  const windowPart = (part: string) => (sql: SqlClient, n: number, value: unknown) => insertWindow(sql, n, { ...WINDOW, [part]: value });
  add('mapping window days', [['mon'], ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], [], ['Monday'], ['mon', 'xyz']], (v) => withWindow({ days: v }), windowPart('days'));
  add('mapping window start', ['00:00', '23:59', '24:00', '8:00', '08:60', '08:00:00'], (v) => withWindow({ start: v }), windowPart('start'));
  add('mapping window end', ['00:00', '23:59', '24:00', '7:5', '08:00'], (v) => withWindow({ start: '08:00', end: v }), windowPart('end'));
  add('mapping window timezone shape', ['UTC', 'America/Argentina/La_Rioja', 'America/Port-au-Prince', 'a'.repeat(65), 'Europe/Berlin;', ''], (v) => withWindow({ timezone: v }), windowPart('timezone'));
  add('mapping window all or none', [{ start: null }, { timezone: null }, { days: null }], (v) => withWindow(v as Record<string, unknown>), (sql, n, value) =>
    insertWindow(sql, n, { ...WINDOW, ...(value as Record<string, unknown>) }),
  );
  add('key rpm_limit', [0, 1, 2_147_483_647], (v) => key({ rpmLimit: v }), insertKey('rpm_limit'));
  add('key rpd_limit', [0, 1, 2_147_483_647], (v) => key({ rpdLimit: v }), insertKey('rpd_limit'));
  // Token quotas (0011): tpm INTEGER, tpd BIGINT up to 2^53 - 1 (exact in JavaScript and Lua).
  const TPD_VALUES = [0, 1, 2_147_483_648, 9_007_199_254_740_991, 2 ** 53];
  add('key tpm_limit', [0, 1, 2_147_483_647], (v) => key({ tpmLimit: v }), insertKey('tpm_limit'));
  add('key tpd_limit', TPD_VALUES, (v) => key({ tpdLimit: v }), insertKey('tpd_limit'));
  const tenant = (fields: Record<string, unknown>) => ok(validateNewTenant({ id: 't', ...fields }));
  const insertTenant = (column: string) => (sql: SqlClient, n: number, value: unknown) =>
    column === 'id'
      ? sql.query(`INSERT INTO tenants (id, name) VALUES ($1, 'x')`, [value])
      : column === 'name'
        ? sql.query(`INSERT INTO tenants (id, name) VALUES ($1, $2)`, [`rules-${n}`, value])
        : sql.query(`INSERT INTO tenants (id, name, ${column}) VALUES ($1, 'x', $2)`, [`rules-${n}`, value]);
  add('tenant id', ['a', 'team-a.prod_1', 't'.repeat(64), 't'.repeat(65), 'a b', 'a/b'], (v) => tenant({ id: v }), insertTenant('id'));
  add('tenant name', ['n'.repeat(100), 'n'.repeat(101)], (v) => tenant({ name: v }), insertTenant('name'));
  add('tenant rpm_limit', [0, 1, 2_147_483_647], (v) => tenant({ rpmLimit: v }), insertTenant('rpm_limit'));
  add('tenant rpd_limit', [0, 1, 2_147_483_647], (v) => tenant({ rpdLimit: v }), insertTenant('rpd_limit'));
  add('tenant tpm_limit', [0, 1, 2_147_483_647], (v) => tenant({ tpmLimit: v }), insertTenant('tpm_limit'));
  add('tenant tpd_limit', TPD_VALUES, (v) => tenant({ tpdLimit: v }), insertTenant('tpd_limit'));
  add('default priority', [-1, 0, 9, 10], (v) => ok(validateSetting('priority.default_priority', v)), (sql, _n, value) =>
    sql.query(`UPDATE api_key_priority_config SET value = $1::text::jsonb WHERE key = 'default_priority'`, [JSON.stringify(value)]),
  );
  const upsertSetting = (key: string) => (sql: SqlClient, _n: number, value: unknown) =>
    sql.query(
      `INSERT INTO api_key_priority_config (key, value) VALUES ($1, $2::text::jsonb)
       ON CONFLICT (key) WHERE deleted_at IS NULL DO UPDATE SET value = EXCLUDED.value`,
      [key, JSON.stringify(value)],
    );
  add('queue max wait', [-1, 0, 30000, 30001], (v) => ok(validateSetting('queue.max_wait_ms', v)), upsertSetting('queue_max_wait_ms'));
  add('queue max length', [0, 1, 100000, 100001], (v) => ok(validateSetting('queue.max_length', v)), upsertSetting('queue_max_length'));
  add('tokens default output', [0, 1, 1_000_000, 1_000_001], (v) => ok(validateSetting('tokens.default_output', v)), upsertSetting('tokens_default_output'));
  return out;
}

function agreementSuite(open: () => Promise<TestDatabase>): void {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await open();
  });
  afterAll(async () => {
    await db?.drop();
  });
  const all = cases();
  it.each(all.map((c, n) => [c.rule, JSON.stringify(c.value).slice(0, 20), c.valid, n] as const))(
    '%s %s: the catalog says %s and so does SQL',
    async (_rule, _label, valid, n) => {
      const accepted = await all[n]!.write(db.client, n).then(
        () => true,
        (error: unknown) => {
          if ((error as { code?: string }).code !== '23514') throw error; // only CHECK violations count as a refusal
          return false;
        },
      );
      expect(accepted).toBe(valid);
    },
  );
}

describe('rules and SQL CHECKs agree (PGlite)', () => agreementSuite(() => createPgliteDatabase()));
describePostgres('rules and SQL CHECKs agree (PostgreSQL)', () => agreementSuite(() => createPostgresDatabase()));
