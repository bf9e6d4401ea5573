// apply / diff / dump against a real store, run on PGlite and on PostgreSQL (reconcile.*.test.ts): creates,
// updates, idempotence, the dump round trip, secrets compared but never exposed, prune, audit actor, and one
// transaction (a write failing half-way leaves nothing behind).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigRepository } from '../../src/catalog/repository.js';
import { dumpConfig } from '../../src/declarative/dump.js';
import { parseConfigText } from '../../src/declarative/parse.js';
import { APPLY_ACTOR, loadCurrentState, reconcile, type ReconcileResult } from '../../src/declarative/reconcile.js';
import { renderPlanText } from '../../src/declarative/render.js';
import { resolveSecrets } from '../../src/declarative/secrets.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { compileSnapshot } from '../../src/snapshot/compile.js';
import type { SqlClient } from '../../src/stores/sql-client.js';
import type { TestDatabase } from '../helpers/db.js';

const NOW_MS = Date.parse('2026-06-01T00:00:00Z');
const UPSTREAM_1 = `sk-upstream-${randomBytes(12).toString('hex')}`;
const UPSTREAM_2 = `sk-upstream-${randomBytes(12).toString('hex')}`;
const IMPORTED = `team-a-existing-${randomBytes(8).toString('hex')}`;

const FILE = `
version: 1
providers:
  - slug: openai
    strategy: least-loaded
    per_model_state: true
accounts:
  - provider: openai
    name: prod-1
    key: {env: OPENAI_KEY_1}
    rpm: 500
    max_concurrency: 20
    tags: {team: a}
  - provider: anthropic
    name: ant-1
    key: {env: ANTHROPIC_KEY_1}
    tier: 1
    status: disabled
keys:
  - name: ci-bot
    tenant: team-a
    allowed_ips: [10.0.0.0/8]
    expires_at: 2030-01-01T00:00:00Z
    rotate_after_days: 30
    prefix: ci
  - name: legacy
    import: {env: LEGACY_KEY}
mappings:
  - match: prefix
    pattern: kp_ci_
    priority: 1
    tenant: team-a
settings:
  priority.enabled: true
`;

export interface ReconcileTarget {
  readonly name: 'pglite' | 'postgres';
  open(): Promise<TestDatabase>;
}

export function reconcileContract(target: ReconcileTarget): void {
  describe(`keypool apply/diff/dump (${target.name})`, () => {
    let db: TestDatabase;
    let repo: ConfigRepository;
    const keyring = Keyring.parse(Keyring.generateSpec('v1'));
    const pepper = new Uint8Array(randomBytes(32));
    /** The environment apply reads references from; a test that rotates a key updates it for the next ones. */
    const env: Record<string, string> = { OPENAI_KEY_1: UPSTREAM_1, ANTHROPIC_KEY_1: UPSTREAM_2, LEGACY_KEY: IMPORTED };

    async function run(text: string, options: { write: boolean; prune?: boolean; env?: Record<string, string>; on?: ConfigRepository }): Promise<ReconcileResult> {
      const parsed = parseConfigText(text);
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
      const resolved = await resolveSecrets(parsed.state, { env: options.env ?? env, baseDir: '/' });
      expect(resolved.problems).toEqual([]);
      return reconcile(options.on ?? repo, parsed.state, resolved.secrets, { write: options.write, prune: options.prune ?? false, nowMs: NOW_MS });
    }

    beforeAll(async () => {
      db = await target.open();
      repo = new ConfigRepository(db.client, { keyring, pepper });
    });

    afterAll(async () => {
      await db?.drop();
    });

    it('diff plans every change without writing; apply writes them; a second apply changes nothing', async () => {
      const before = await loadCurrentState(repo);
      const diff = await run(FILE, { write: false });
      expect(diff.written).toBe(false);
      expect(diff.plan.problems).toEqual([]);
      expect(diff.plan.changes.map((c) => `${c.op} ${c.entity} ${c.ref}`)).toEqual([
        'update setting priority.enabled',
        'update provider openai',
        'create account openai/prod-1',
        'create account anthropic/ant-1',
        'create key ci-bot',
        'create key legacy',
        'create mapping prefix "kp_ci_"',
      ]);
      expect(await loadCurrentState(repo)).toEqual(before);

      const applied = await run(FILE, { write: true });
      expect(applied.written).toBe(true);
      expect(applied.issued.map((k) => k.name)).toEqual(['ci-bot']);
      expect(applied.issued[0]!.plaintextKey).toMatch(/^kp_ci_[0-9A-Za-z]{40}$/);

      const state = await loadCurrentState(repo);
      expect(state.settings.enabled).toBe(true);
      expect(state.providers.find((p) => p.slug === 'openai')).toMatchObject({ defaultStrategy: 'least-loaded', perModelState: true });
      expect(state.accounts.find((a) => a.name === 'prod-1')).toMatchObject({ rpmLimit: 500, maxConcurrency: 20, tags: { team: 'a' }, status: 'active' });
      expect(state.accounts.find((a) => a.name === 'ant-1')).toMatchObject({ tier: 1, status: 'disabled' });
      expect(state.keys.find((k) => k.name === 'ci-bot')).toMatchObject({ tenantId: 'team-a', allowedIps: ['10.0.0.0/8'], rotateAfterDays: 30 });

      const again = await run(FILE, { write: true });
      expect(again.written).toBe(false);
      expect(again.plan.changes).toEqual([]);
      expect(renderPlanText(again.plan)).toBe('in sync: no changes\n');
    });

    it('stores the upstream keys encrypted and the imported client key by digest: both work on the request path', async () => {
      const snapshot = compileSnapshot(await repo.loadConfigData(), { keyring, pepper }, 1, NOW_MS);
      expect(snapshot.pools.get('openai')?.accounts.find((a) => a.name === 'prod-1')?.secret).toBe(UPSTREAM_1);
      const entry = snapshot.keysByDigest.get(snapshot.digestKey(IMPORTED));
      expect(entry?.key.name).toBe('legacy');
      const rows = await db.client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM provider_accounts WHERE encrypted_key LIKE $1 OR encrypted_key LIKE $2`,
        [`%${UPSTREAM_1}%`, `%${UPSTREAM_2}%`],
      );
      expect(rows[0]!.n).toBe(0);
    });

    it('manages key quotas: rpm/rpd set, changed and removed (left out = unlimited); dump round-trips them', async () => {
      const withQuota = FILE.replace('    rotate_after_days: 30\n', '    rotate_after_days: 30\n    rpm: 60\n    rpd: 5000\n');
      expect(withQuota).not.toBe(FILE);
      const set = await run(withQuota, { write: true });
      expect(set.plan.changes.map((c) => [c.ref, c.fields.map((f) => `${f.field}: ${String(f.from)} -> ${String(f.to)}`)])).toEqual([
        ['ci-bot', ['rpm: null -> 60', 'rpd: null -> 5000']],
      ]);
      expect((await loadCurrentState(repo)).keys.find((k) => k.name === 'ci-bot')).toMatchObject({ rpmLimit: 60, rpdLimit: 5000 });
      expect(dumpConfig(await loadCurrentState(repo))).toContain('rpm: 60');
      expect((await run(withQuota, { write: true })).plan.changes).toEqual([]);
      const removed = await run(FILE, { write: true });
      expect(removed.plan.changes.map((c) => c.fields.map((f) => f.field))).toEqual([['rpm', 'rpd']]);
      expect((await loadCurrentState(repo)).keys.find((k) => k.name === 'ci-bot')).toMatchObject({ rpmLimit: null, rpdLimit: null });
    });

    it('manages token quotas of keys and tenants (tpm/tpd): set, round-trip through dump, removed', async () => {
      const withTokens = `${FILE.replace('    rotate_after_days: 30\n', '    rotate_after_days: 30\n    tpm: 50000\n    tpd: 5000000000\n')}\ntenants:\n  - {id: tok, tpm: 200000, tpd: 10000000}\n`;
      const set = await run(withTokens, { write: true });
      expect(set.plan.changes.map((c) => [c.ref, c.fields.filter((f) => f.to !== null && f.field.startsWith('tp')).map((f) => `${f.field}: ${String(f.to)}`)])).toEqual([
        ['ci-bot', ['tpm: 50000', 'tpd: 5000000000']],
        ['tok', ['tpm: 200000', 'tpd: 10000000']],
      ]);
      const current = await loadCurrentState(repo);
      expect(current.keys.find((k) => k.name === 'ci-bot')).toMatchObject({ tpmLimit: 50000, tpdLimit: 5_000_000_000 });
      expect(current.tenants).toEqual([expect.objectContaining({ id: 'tok', tpmLimit: 200000, tpdLimit: 10_000_000 })]);
      const dumped = dumpConfig(current);
      expect(dumped).toContain('tpd: 5000000000');
      expect((await run(dumped, { write: false })).plan.changes).toEqual([]);
      const removed = await run(FILE, { write: true });
      expect(removed.plan.changes.map((c) => c.fields.map((f) => f.field))).toEqual([['tpm', 'tpd']]);
      expect((await loadCurrentState(repo)).keys.find((k) => k.name === 'ci-bot')).toMatchObject({ tpmLimit: null, tpdLimit: null });
      await repo.tenants.delete('tok', 'test');
    });

    it('manages account models and scope: set, changed, removed (left out = any model, own scope); dump round-trips them', async () => {
      const withModels = FILE.replace('    tags: {team: a}\n', "    tags: {team: a}\n    models: ['gpt-4o*', o1]\n    scope: openai-org-acme/project-x\n");
      expect(withModels).not.toBe(FILE);
      const set = await run(withModels, { write: true });
      expect(set.plan.changes.map((c) => [c.ref, c.fields.map((f) => `${f.field}: ${JSON.stringify(f.from)} -> ${JSON.stringify(f.to)}`)])).toEqual([
        ['openai/prod-1', ['models: [] -> ["gpt-4o*","o1"]', 'scope: null -> "openai-org-acme/project-x"']],
      ]);
      expect((await loadCurrentState(repo)).accounts.find((a) => a.name === 'prod-1')).toMatchObject({ models: ['gpt-4o*', 'o1'], scope: 'openai-org-acme/project-x' });
      const dumped = dumpConfig(await loadCurrentState(repo));
      expect(dumped).toContain('scope: openai-org-acme/project-x');
      const reparsed = parseConfigText(dumped);
      expect(reparsed.ok && reparsed.state.accounts?.find((a) => a.name === 'prod-1')?.models).toEqual(['gpt-4o*', 'o1']);
      expect((await run(withModels, { write: true })).plan.changes).toEqual([]);
      const bad = parseConfigText(withModels.replace("['gpt-4o*', o1]", "['gpt-*-mini']"));
      expect(bad.ok).toBe(false);
      const removed = await run(FILE, { write: true });
      expect(removed.plan.changes.map((c) => c.fields.map((f) => f.field))).toEqual([['models', 'scope']]);
      expect((await loadCurrentState(repo)).accounts.find((a) => a.name === 'prod-1')).toMatchObject({ models: [], scope: null });
    });

    it('manages tenants: create, change, prune; dump writes them back', async () => {
      const withTenants = `${FILE}\ntenants:\n  - {id: acme, name: ACME, rpm: 600}\n  - {id: beta, rpd: 1000}\n`;
      const created = await run(withTenants, { write: true });
      expect(created.plan.changes.map((c) => `${c.op} ${c.entity} ${c.ref}`)).toEqual(['create tenant acme', 'create tenant beta']);
      expect((await loadCurrentState(repo)).tenants).toEqual([
        expect.objectContaining({ id: 'acme', name: 'ACME', rpmLimit: 600, rpdLimit: null }),
        expect.objectContaining({ id: 'beta', name: 'beta', rpmLimit: null, rpdLimit: 1000 }),
      ]);
      expect(dumpConfig(await loadCurrentState(repo))).toContain('- id: beta\n    rpd: 1000');
      const changed = await run(`${FILE}\ntenants:\n  - {id: acme, name: ACME}\n`, { write: true, prune: true });
      expect(changed.plan.changes.filter((c) => c.entity === 'tenant').map((c) => `${c.op} ${c.ref} ${c.fields.map((f) => f.field).join(',')}`)).toEqual([
        'update acme rpm',
        'delete beta ',
      ]);
      expect((await loadCurrentState(repo)).tenants).toEqual([expect.objectContaining({ id: 'acme', rpmLimit: null })]);
    });

    it('manages token prices: create (decimal text kept exact), idempotent, update, dump round trip, prune; audited like `prices set`', async () => {
      const withPrices = `${FILE}\nprices:\n  - {provider: openai, model: gpt-4o*, input: 2.5, output: 10, cached_input: "1.25"}\n  - {provider: openrouter, model: openai/gpt-4o-mini, input: "0.075", output: 0.3}\n`;
      const created = await run(withPrices, { write: true });
      expect(created.plan.changes.map((c) => `${c.op} ${c.entity} ${c.ref}`)).toEqual(['create price openai gpt-4o*', 'create price openrouter openai/gpt-4o-mini']);
      const stored = (await loadCurrentState(repo)).prices;
      expect(stored).toEqual([
        expect.objectContaining({ providerSlug: 'openai', model: 'gpt-4o*', inputUsdPerMTok: 2.5, outputUsdPerMTok: 10, cachedInputUsdPerMTok: 1.25, cacheCreationUsdPerMTok: null }),
        expect.objectContaining({ providerSlug: 'openrouter', model: 'openai/gpt-4o-mini', inputUsdPerMTok: 0.075, outputUsdPerMTok: 0.3, cachedInputUsdPerMTok: null }),
      ]);
      expect((await run(withPrices, { write: true })).plan.changes).toEqual([]);
      const dumped = dumpConfig(await loadCurrentState(repo));
      expect(dumped).toContain('- provider: openrouter\n    model: openai/gpt-4o-mini\n    input: 0.075\n    output: 0.3\n');
      expect((await run(dumped, { write: false, prune: true })).plan.changes).toEqual([]);
      // Left out of the file, the section is not managed: nothing is pruned.
      expect((await run(FILE, { write: false, prune: true })).plan.changes.filter((c) => c.entity === 'price')).toEqual([]);
      const changed = await run(`${FILE}\nprices:\n  - {provider: openai, model: gpt-4o*, input: 2.5, output: 12.000001}\n`, { write: true, prune: true });
      expect(changed.plan.changes.filter((c) => c.entity === 'price').map((c) => `${c.op} ${c.ref} ${c.fields.map((f) => `${f.field} ${String(f.from)}->${String(f.to)}`).join(',')}`)).toEqual([
        'update openai gpt-4o* output 10->12.000001,cached_input 1.25->null',
        'delete openrouter openai/gpt-4o-mini ',
      ]);
      expect((await loadCurrentState(repo)).prices).toEqual([expect.objectContaining({ model: 'gpt-4o*', outputUsdPerMTok: 12.000001, cachedInputUsdPerMTok: null })]);
      const audited = (await repo.audit.list({ limit: 1000 })).rows.filter((r) => r.actor === APPLY_ACTOR && r.metadata?.name === 'token_price');
      expect(audited.map((r) => [r.action, (r.metadata?.value as { model?: string } | null)?.model ?? null])).toEqual(
        expect.arrayContaining([
          ['config_set', 'gpt-4o*'],
          ['config_set', 'openai/gpt-4o-mini'],
          ['config_set', null],
        ]),
      );
      expect(audited).toHaveLength(4);
    });

    it('audits every write with the actor `apply`', async () => {
      const page = await repo.audit.list({ limit: 1000 });
      const byApply = page.rows.filter((r) => r.actor === APPLY_ACTOR).map((r) => r.action);
      expect(byApply).toEqual(expect.arrayContaining(['config_set', 'account_created', 'created', 'mapping_created']));
      expect(JSON.stringify(page.rows)).not.toContain(UPSTREAM_1);
      expect(JSON.stringify(page.rows)).not.toContain(IMPORTED);
    });

    it('dump is a valid file, and applying it changes nothing', async () => {
      const text = dumpConfig(await loadCurrentState(repo));
      expect(text).not.toContain(UPSTREAM_1);
      const result = await run(text, { write: true, prune: true, env: {} });
      expect(result.plan.problems).toEqual([]);
      expect(result.plan.changes).toEqual([]);
    });

    it('a changed upstream key is `key: changed`, never its value; apply replaces it', async () => {
      const rotated = `sk-upstream-${randomBytes(12).toString('hex')}`;
      const diff = await run(FILE, { write: false, env: { ...env, OPENAI_KEY_1: rotated } });
      const text = renderPlanText(diff.plan);
      expect(text).toBe('~ account openai/prod-1: key: changed\n1 change(s): 0 to create, 1 to update, 0 to delete\n');
      expect(text).not.toContain(rotated);
      await run(FILE, { write: true, env: { ...env, OPENAI_KEY_1: rotated } });
      const snapshot = compileSnapshot(await repo.loadConfigData(), { keyring, pepper }, 1, NOW_MS);
      expect(snapshot.pools.get('openai')?.accounts.find((a) => a.name === 'prod-1')?.secret).toBe(rotated);
      env.OPENAI_KEY_1 = rotated;
      expect((await run(FILE, { write: false })).plan.changes).toEqual([]);
    });

    it('updates only the fields that differ, and --prune soft-deletes what the file no longer names', async () => {
      const edited = FILE.replace('rpm: 500', 'rpm: 600').replace(/ {2}- provider: anthropic[\s\S]*?status: disabled\n/, '');
      const diff = await run(edited, { write: false });
      expect(renderPlanText(diff.plan)).toBe('~ account openai/prod-1: rpm 500 -> 600\n1 change(s): 0 to create, 1 to update, 0 to delete\n');
      const pruned = await run(edited, { write: true, prune: true });
      expect(pruned.plan.changes.map((c) => `${c.op} ${c.ref}`)).toEqual(['update openai/prod-1', 'delete anthropic/ant-1']);
      const state = await loadCurrentState(repo);
      expect(state.accounts.map((a) => a.name)).toEqual(['prod-1']);
      expect(state.accounts[0]!.rpmLimit).toBe(600);
    });

    it('time-based rules: windows are part of a mapping\'s identity, round-trip through dump, and reach the snapshot', async () => {
      const windows = `
mappings:
  - {match: prefix, pattern: kp_batch-, priority: 7, window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "20:00", timezone: Europe/Berlin}}
  - {match: prefix, pattern: kp_batch-, priority: 8, window: "sat,sun 22:00-06:00 America/New_York"}
  - {match: prefix, pattern: kp_batch-, priority: 3}
`;
      const diff = await run(windows, { write: false });
      expect(diff.plan.changes.map((c) => `${c.op} ${c.ref}`)).toEqual([
        'create prefix "kp_batch-" [mon-fri 08:00-20:00 Europe/Berlin]',
        'create prefix "kp_batch-" [sat,sun 22:00-06:00 America/New_York]',
        'create prefix "kp_batch-"',
      ]);
      expect(renderPlanText(diff.plan)).toContain('+ mapping prefix "kp_batch-" [mon-fri 08:00-20:00 Europe/Berlin]: priority 7, enabled true\n');
      await run(windows, { write: true });
      expect((await run(windows, { write: false })).plan.changes).toEqual([]);

      const text = dumpConfig(await loadCurrentState(repo));
      expect(text).toMatch(/timezone: Europe\/Berlin/);
      const again = await run(text, { write: false, prune: true, env: {} });
      expect(again.plan.problems).toEqual([]);
      expect(again.plan.changes).toEqual([]);

      await repo.settings.set('priority.enabled', true, 'test');
      const snapshot = compileSnapshot(await repo.loadConfigData(), { keyring, pepper }, 1, NOW_MS);
      const at = (iso: string) => snapshot.priority.resolve('kp_batch-nightly_1', Date.parse(iso)).priority;
      expect(at('2026-06-03T10:00:00Z')).toBe(7); // Wednesday 12:00 in Berlin
      expect(at('2026-06-07T03:00:00Z')).toBe(8); // Saturday 23:00 in New York
      expect(at('2026-06-03T20:00:00Z')).toBe(3); // Wednesday 22:00 in Berlin

      // A changed window is another mapping: without --prune the old one stays, with it the old one goes.
      const moved = windows.replace('"sat,sun 22:00-06:00 America/New_York"', '"sat,sun 21:00-06:00 America/New_York"');
      const pruned = await run(moved, { write: true, prune: true });
      expect(pruned.plan.changes.map((c) => `${c.op} ${c.ref}`)).toEqual([
        'create prefix "kp_batch-" [sat,sun 21:00-06:00 America/New_York]',
        'delete prefix "kp_ci_"',
        'delete prefix "kp_batch-" [sat,sun 22:00-06:00 America/New_York]',
      ]);
    });

    it('refuses what the store cannot take: an unknown provider, a new account without a key, reactivating a revoked key', async () => {
      await repo.keys.revoke('legacy', 'test');
      const bad = `
providers:
  - slug: mistral
    strategy: round-robin
accounts:
  - provider: openai
    name: brand-new
keys:
  - name: legacy
`;
      const result = await run(bad, { write: true });
      expect(result.written).toBe(false);
      expect(result.plan.problems.map((p) => p.path)).toEqual(['providers[0]', 'accounts[0]', 'keys[0].status']);
      expect(result.plan.problems[2]!.message).toContain('revoked');
    });

    it('writes all or nothing: a failure half-way rolls every change back', async () => {
      const before = await loadCurrentState(repo);
      const file = `
settings:
  priority.default_priority: 3
mappings:
  - match: suffix
    pattern: -nightly
    priority: 9
`;
      const failing = new ConfigRepository(failOn(db.client, 'INSERT INTO api_key_priority_mappings'), { keyring, pepper });
      await expect(run(file, { write: true, on: failing })).rejects.toThrow('injected failure');
      expect(await loadCurrentState(repo)).toEqual(before);
    });
  });
}

/** A SqlClient (our port) that fails the first statement containing `marker`, inside or outside transactions. */
function failOn(inner: SqlClient, marker: string): SqlClient {
  const wrap = (client: SqlClient): SqlClient => ({
    kind: client.kind,
    query: (text, params) => (text.includes(marker) ? Promise.reject(new Error('injected failure')) : client.query(text, params)),
    exec: (text) => client.exec(text),
    transaction: (fn) => client.transaction((tx) => fn(wrap(tx))),
    listen: (channel, onNotify, onListen) => client.listen(channel, onNotify, onListen),
    close: () => client.close(),
  });
  return wrap(inner);
}
