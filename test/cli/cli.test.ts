// The built `keypool` command end to end: spawned as users run it (node dist/src/cli/main.js), on the embedded
// store (PGlite in a temporary data dir) and on a fresh PostgreSQL database. Checks output, exit codes and that
// an upstream secret never reaches stdout or stderr.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExtProcClient } from '../envoy/ext-proc-client.js';
import { createTestPki } from '../helpers/tls.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const UPSTREAM_SECRET = `sk-test-${randomBytes(18).toString('hex')}`;
const SECRET_MARKER = UPSTREAM_SECRET.slice(8, 28);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MISSING_ID = '00000000-0000-4000-8000-000000000000';
/** Each run starts a Node process (and PGlite, ~1 s alone); a busy 2-core machine can make that 10x slower. */
const SLOW_TEST_MS = 240_000;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Every stdout/stderr the tests saw, checked at the end for the upstream secret. */
const transcript: string[] = [];

function run(args: readonly string[], env: Record<string, string | undefined>, input?: string): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      transcript.push(stdout, stderr);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

function baseEnv(extra: Record<string, string | undefined>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'silent', ...extra };
  for (const name of ['DATABASE_URL', 'KEYPOOL_DATA_DIR', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER', 'UPSTREAM_FROM_ENV']) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

const secretsEnv = {
  KEYPOOL_ENCRYPTION_KEYS: `v1:${randomBytes(32).toString('base64')}`,
  KEYPOOL_KEY_PEPPER: `base64:${randomBytes(32).toString('base64')}`,
};

function parseJson<T>(result: Run): T {
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as T;
}

beforeAll(() => {
  if (!existsSync(CLI)) {
    // `npm test` builds first; a direct `npx vitest run test/cli` may not have.
    const build = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (!existsSync(CLI)) throw new Error(`build failed:\n${build.stdout}\n${build.stderr}`);
  }
});

afterAll(() => {
  // The one invariant over every run: the upstream secret never appears in any output.
  for (const text of transcript) expect(text).not.toContain(SECRET_MARKER);
});

describe('keypool CLI on the embedded store', { timeout: SLOW_TEST_MS }, () => {
  let dataDir: string;
  let env: Record<string, string | undefined>;
  const cli = (args: readonly string[], input?: string, extra: Record<string, string> = {}) => run(args, { ...env, ...extra }, input);

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kp-cli-'));
    env = baseEnv({ KEYPOOL_DATA_DIR: dataDir, ...secretsEnv });
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses to work before migrate, then migrates idempotently', async () => {
    const before = await cli(['keys', 'list']);
    expect(before.code).toBe(1);
    expect(before.stderr).toContain('keypool migrate');

    const first = await cli(['migrate', '--json']);
    expect(parseJson<{ applied: string[] }>(first).applied.length).toBeGreaterThan(0);
    const second = await cli(['migrate']);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/up to date/);
  });

  let keyId = '';

  it('creates a key, prints it once, and lists it without the key', async () => {
    const created = await cli([
      'keys',
      'create',
      '--name',
      'ci-bot',
      '--tenant',
      'acme',
      '--allowed-ips',
      '10.0.0.0/8,2001:db8::/32',
      '--expires-in',
      '90d',
      '--rotate-after-days',
      '30',
    ]);
    expect(created.code).toBe(0);
    const plaintext = /\b(kp_[A-Za-z0-9]{32,})\b/.exec(created.stdout)?.[1];
    expect(plaintext).toBeDefined();
    expect(created.stdout).toMatch(/shown only once/);
    keyId = /Created key ([0-9a-f-]{36})/.exec(created.stdout)?.[1] ?? '';
    expect(keyId).toMatch(UUID_RE);

    const listed = await cli(['keys', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('ci-bot');
    expect(listed.stdout).toContain('10.0.0.0/8,2001:db8::/32');
    expect(listed.stdout).not.toContain(plaintext!);

    const json = parseJson<{ items: Array<Record<string, unknown>> }>(await cli(['keys', 'list', '--json'])).items;
    const row = json.find((k) => k.id === keyId);
    expect(row).toMatchObject({ name: 'ci-bot', tenant_id: 'acme', status: 'active', rotate_after_days: 30 });
    expect(row?.allowed_ips).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    expect(JSON.stringify(json)).not.toContain(plaintext!);
  });

  it('creates a key with --json: the plaintext under api_key (as the admin API), once', async () => {
    const out = parseJson<{ key: { id: string; key_prefix: string }; api_key: string }>(
      await cli(['keys', 'create', '--name', 'json-bot', '--json']),
    );
    expect(out.api_key).toMatch(/^kp_[A-Za-z0-9]{32,}$/);
    expect(out.api_key.startsWith(out.key.key_prefix)).toBe(true);
    expect(out.key.id).toMatch(UUID_RE);
  });

  it('rotates with a grace window and revokes', async () => {
    const rotated = parseJson<{ key: { id: string; previous_key_expires_at: string }; api_key: string }>(
      await cli(['keys', 'rotate', keyId, '--grace', '24h', '--json']),
    );
    expect(rotated.key.id).toBe(keyId);
    expect(rotated.api_key).toMatch(/^kp_/);
    const graceEndMs = Date.parse(rotated.key.previous_key_expires_at);
    expect(Math.abs(graceEndMs - (Date.now() + 86_400_000))).toBeLessThan(120_000);

    const revoked = await cli(['keys', 'revoke', keyId]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`Revoked key ${keyId}`);
    const rows = parseJson<{ items: Array<{ id: string; status: string }> }>(await cli(['keys', 'list', '--json'])).items;
    expect(rows.find((k) => k.id === keyId)?.status).toBe('revoked');
  });

  it('lists keys due for rotation (none yet)', async () => {
    const due = await cli(['keys', 'list', '--due', '--json']);
    expect(parseJson<{ items: unknown[] }>(due).items).toEqual([]);
  });

  let accountId = '';

  it('adds an account with the key on stdin (one trailing newline trimmed)', async () => {
    const added = await cli(['accounts', 'add', '--provider', 'openai', '--name', 'main', '--weight', '5', '--json'], `${UPSTREAM_SECRET}\n`);
    const { account } = parseJson<{ account: { id: string; key_last4: string; weight: number; status: string } }>(added);
    expect(account).toMatchObject({ key_last4: UPSTREAM_SECRET.slice(-4), weight: 5, status: 'active' });
    accountId = account.id;
  });

  it('adds accounts with CRLF stdin and with --key-env, and lists them without secrets', async () => {
    const added = await cli(
      ['accounts', 'add', '--provider', 'anthropic', '--name', 'backup', '--tier', '1', '--rpm', '50', '--tag', 'team=ml'],
      `${UPSTREAM_SECRET}\r\n`,
    );
    expect(added.code).toBe(0);
    const withEnv = await cli(['accounts', 'add', '--provider', 'anthropic', '--name', 'env', '--key-env', 'UPSTREAM_FROM_ENV'], undefined, {
      UPSTREAM_FROM_ENV: UPSTREAM_SECRET,
    });
    expect(withEnv.code).toBe(0);
    expect(withEnv.stdout).toContain(`...${UPSTREAM_SECRET.slice(-4)}`);

    const table = await cli(['accounts', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/openai\s+main/);
    const rows = parseJson<{ items: Array<{ provider: string; name: string }> }>(await cli(['accounts', 'list', '--provider', 'anthropic', '--json'])).items;
    expect(rows.map((r) => r.name).sort()).toEqual(['backup', 'env']);
  });

  it('adds an account with --models and --scope, updates them, and clears them with none', async () => {
    type Row = { account: { id: string; models: string[]; scope: string | null } };
    const added = parseJson<Row>(
      await cli(['accounts', 'add', '--provider', 'openai', '--name', 'org-a', '--models', 'gpt-4o*, o1', '--scope', 'openai-org-acme/project-x', '--json'], `${UPSTREAM_SECRET}\n`),
    );
    expect(added.account).toMatchObject({ models: ['gpt-4o*', 'o1'], scope: 'openai-org-acme/project-x' });
    const updated = parseJson<Row>(await cli(['accounts', 'update', added.account.id, '--models', 'o3-mini', '--json']));
    expect(updated.account).toMatchObject({ models: ['o3-mini'], scope: 'openai-org-acme/project-x' });
    const shown = await cli(['accounts', 'update', added.account.id, '--models', 'none', '--scope', 'none']);
    expect(shown.stdout).toMatch(/models:\s+any/);
    const cleared = parseJson<{ items: Array<{ id: string; models: string[]; scope: string | null }> }>(await cli(['accounts', 'list', '--json'])).items;
    expect(cleared.find((row) => row.id === added.account.id)).toMatchObject({ models: [], scope: null });
  });

  it('sets a provider per-model state switch with --per-model-state on|off; a bad value names the flag', async () => {
    const on = await cli(['providers', 'set', 'openai', '--per-model-state', 'on']);
    expect(on.code, on.stderr).toBe(0);
    expect(on.stdout).toMatch(/per-model state on/);
    const listed = parseJson<{ items: Array<{ slug: string; per_model_state: boolean }> }>(await cli(['providers', 'list', '--json'])).items;
    expect(listed.find((p) => p.slug === 'openai')?.per_model_state).toBe(true);
    expect(listed.find((p) => p.slug === 'anthropic')?.per_model_state).toBe(false);
    const bad = await cli(['providers', 'set', 'openai', '--per-model-state', 'maybe']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--per-model-state/);
    expect(parseJson<{ provider: { per_model_state: boolean } }>(await cli(['providers', 'set', 'openai', '--per-model-state', 'off', '--json'])).provider.per_model_state).toBe(false);
  });

  it('disables and enables an account', async () => {
    const disabled = parseJson<{ account: { status: string; disabled_reason: string } }>(
      await cli(['accounts', 'disable', accountId, '--reason', 'quota exhausted', '--json']),
    );
    expect(disabled.account).toMatchObject({ status: 'disabled', disabled_reason: 'quota exhausted' });
    const enabled = parseJson<{ account: { status: string } }>(await cli(['accounts', 'enable', accountId, '--json']));
    expect(enabled.account.status).toBe('active');
  });

  it('adds, lists and removes a mapping', async () => {
    const added = parseJson<{ mapping: { id: string; priority: number } }>(
      await cli(['mappings', 'add', '--pattern', 'kp_team', '--match', 'prefix', '--priority', '1', '--tenant-id', 'team-a', '--tenant-type', 'internal', '--json']),
    );
    expect(added.mapping.priority).toBe(1);
    const listed = await cli(['mappings', 'list']);
    expect(listed.stdout).toMatch(/prefix\s+kp_team\s+1\s+team-a/);
    const removed = await cli(['mappings', 'remove', added.mapping.id]);
    expect(removed.code).toBe(0);
    const after = parseJson<{ items: Array<{ id: string }> }>(await cli(['mappings', 'list', '--json'])).items;
    expect(after.some((m) => m.id === added.mapping.id)).toBe(false);
  });

  it('adds and updates a mapping window (--window), and clears it with none', async () => {
    type Window = { days: string[]; start: string; end: string; timezone: string } | null;
    const added = parseJson<{ mapping: { id: string; window: Window } }>(
      await cli(['mappings', 'add', '--pattern', 'kp_batch-', '--match', 'prefix', '--priority', '7', '--window', 'mon-fri 08:00-20:00 Europe/Berlin', '--json']),
    );
    expect(added.mapping.window).toEqual({ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '20:00', timezone: 'Europe/Berlin' });
    const fallback = await cli(['mappings', 'add', '--pattern', 'kp_batch-', '--match', 'prefix', '--priority', '3']);
    expect(fallback.code).toBe(0);
    expect(fallback.stdout).toMatch(/window:\s+always/);
    expect((await cli(['mappings', 'list'])).stdout).toMatch(/prefix\s+kp_batch-\s+7\s+-\s+mon-fri 08:00-20:00 Europe\/Berlin/);
    const moved = await cli(['mappings', 'update', added.mapping.id, '--window', 'sat,sun 22:00-06:00 America/New_York', '--priority', '8']);
    expect(moved.code).toBe(0);
    expect(moved.stdout).toMatch(/priority:\s+8/);
    expect(moved.stdout).toMatch(/window:\s+sat,sun 22:00-06:00 America\/New_York/);
    const refused = await cli(['mappings', 'update', added.mapping.id, '--window', 'mon 08:00-09:00 Mars/Base']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--window timezone: "Mars\/Base" is not a known IANA time zone/);
    // No window would give the pattern a second always-on rule: the fallback exists.
    expect((await cli(['mappings', 'update', added.mapping.id, '--window', 'none'])).code).not.toBe(0);
    const disabled = parseJson<{ mapping: { enabled: boolean; window: Window } }>(await cli(['mappings', 'update', added.mapping.id, '--disable', '--json']));
    expect(disabled.mapping).toMatchObject({ enabled: false, window: { days: ['sat', 'sun'], start: '22:00', end: '06:00', timezone: 'America/New_York' } });
    const listed = parseJson<{ items: Array<{ id: string; pattern: string }> }>(await cli(['mappings', 'list', '--json'])).items;
    for (const item of listed.filter((m) => m.pattern === 'kp_batch-')) expect((await cli(['mappings', 'remove', item.id])).code).toBe(0);
  });

  it('manages tenants and key quotas (keys update --rpm/--rpd, none removes)', async () => {
    const created = parseJson<{ tenant: any }>(await cli(['tenants', 'create', 'acme', '--name', 'ACME Corp', '--rpm', '600', '--rpd', '100000', '--json']));
    expect(created.tenant).toMatchObject({ id: 'acme', name: 'ACME Corp', rpm_limit: 600, rpd_limit: 100000 });
    const updated = await cli(['tenants', 'update', 'acme', '--rpd', 'none']);
    expect(updated.code).toBe(0);
    expect(updated.stdout).toContain('requests per day');
    expect(parseJson<{ items: any[] }>(await cli(['tenants', 'list', '--json'])).items).toEqual([
      expect.objectContaining({ id: 'acme', rpm_limit: 600, rpd_limit: null }),
    ]);
    const bad = await cli(['tenants', 'create', 'a b']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('<id>: "a b" must be 1-64 characters');
    const badLimit = await cli(['keys', 'create', '--name', 'q', '--rpm', '0']);
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain('--rpm');

    const key = parseJson<{ key: any }>(await cli(['keys', 'create', '--name', 'quota-bot', '--tenant', 'acme', '--rpm', '30', '--json'])).key;
    expect(key).toMatchObject({ rpm_limit: 30, rpd_limit: null });
    const changed = parseJson<{ key: any }>(await cli(['keys', 'update', 'quota-bot', '--rpd', '1000', '--rpm', 'none', '--json'])).key;
    expect(changed).toMatchObject({ rpm_limit: null, rpd_limit: 1000, tenant_id: 'acme' });
    const tokens = parseJson<{ key: any }>(await cli(['keys', 'update', 'quota-bot', '--tpm', '50000', '--tpd', '5000000000', '--json'])).key;
    expect(tokens).toMatchObject({ tpm_limit: 50000, tpd_limit: 5_000_000_000 });
    expect(parseJson<{ key: any }>(await cli(['keys', 'update', 'quota-bot', '--tpm', 'none', '--json'])).key).toMatchObject({ tpm_limit: null });
    const tenantTokens = parseJson<{ tenant: any }>(await cli(['tenants', 'update', 'acme', '--tpm', '200000', '--tpd', '10000000', '--json'])).tenant;
    expect(tenantTokens).toMatchObject({ tpm_limit: 200000, tpd_limit: 10_000_000 });
    expect((await cli(['tenants', 'delete', 'acme'])).code).toBe(0);
    expect((await cli(['tenants', 'show', 'acme'])).code).not.toBe(0);
  });

  it('manages token prices (set replaces, list, delete; bad input names the flag)', async () => {
    const set = parseJson<{ price: any }>(await cli(['prices', 'set', 'openai', 'gpt-4o*', '--input', '2.5', '--output', '10', '--cached-input', '1.25', '--json']));
    expect(set.price).toMatchObject({ provider: 'openai', model: 'gpt-4o*', input: 2.5, output: 10, cached_input: 1.25, cache_creation: null });
    expect((await cli(['prices', 'set', 'openai', 'gpt-4o*', '--input', '3', '--output', '12'])).stdout).toBe('Set the price of openai gpt-4o*\n');
    expect(parseJson<{ items: any[] }>(await cli(['prices', 'list', '--json'])).items).toEqual([
      expect.objectContaining({ provider: 'openai', model: 'gpt-4o*', input: 3, output: 12, cached_input: null }),
    ]);
    const bad = await cli(['prices', 'set', 'openai', 'm', '--input', '-1', '--output', '1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--input');
    const missing = await cli(['prices', 'set', 'openai', 'm', '--input', '1']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--output');
    expect((await cli(['prices', 'delete', 'openai', 'gpt-4o*'])).code).toBe(0);
    expect((await cli(['prices', 'list'])).stdout).toContain('(no prices');
    expect((await cli(['prices', 'delete', 'openai', 'gpt-4o*'])).code).not.toBe(0);
  });

  it('sets and reads settings', async () => {
    expect((await cli(['config', 'set', 'priority.enabled', 'true'])).stdout).toBe('priority.enabled = true\n');
    expect((await cli(['config', 'set', 'priority.default_priority', '5'])).code).toBe(0);
    expect((await cli(['config', 'set', 'queue.max_wait_ms', '2500'])).code).toBe(0);
    const outOfRange = await cli(['config', 'set', 'queue.max_wait_ms', '30001']);
    expect(outOfRange.code).not.toBe(0);
    expect(outOfRange.stderr).toMatch(/queue\.max_wait_ms: must be between 0 and 30000/);
    expect(parseJson<Record<string, unknown>>(await cli(['config', 'get', '--json']))).toEqual({
      'priority.enabled': true,
      'priority.default_priority': 5,
      'priority.reserve': [0, 0, 0, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25, 0.25],
      'queue.max_wait_ms': 2500,
      'queue.max_length': 1000,
      'tokens.default_output': 1024,
    });
    expect((await cli(['config', 'set', 'tokens.default_output', '4096'])).stdout).toBe('tokens.default_output = 4096\n');
    expect((await cli(['config', 'set', 'priority.reserve', '{"P7":0.5}'])).stdout).toBe('priority.reserve = [0,0,0,0.1,0.1,0.1,0.25,0.5,0.25,0.25]\n');
    expect((await cli(['config', 'set', 'priority.reserve', '[0,0,0,0,0,0,0,0,0,1]'])).code).toBe(2);
    expect(parseJson(await cli(['config', 'get', 'priority.enabled', '--json']))).toEqual({ name: 'priority.enabled', value: true });
  });

  it('prunes the audit log and usage stats older than an age, and audits the pruning', async () => {
    const result = parseJson<{ auditRows: number; usageBuckets: number; before: string }>(await cli(['audit', 'prune', '--before', '90d', '--json']));
    // Everything here is minutes old: nothing goes, but the pruning itself is recorded.
    expect(result).toMatchObject({ auditRows: 0, usageBuckets: 0 });
    expect(Date.parse(result.before)).toBeLessThan(Date.now() - 89 * 86_400_000);
    expect((await cli(['audit', 'prune', '--before', '90d'])).stdout).toMatch(/^Pruned 0 audit rows and 0 usage buckets older than \d{4}-/);
  });

  it('re-encrypts account keys under a new key-ring version', async () => {
    const ring = `v2:${randomBytes(32).toString('base64')},${secretsEnv.KEYPOOL_ENCRYPTION_KEYS}`;
    const result = await cli(['crypto', 'reencrypt'], undefined, { KEYPOOL_ENCRYPTION_KEYS: ring });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/v2/);
    const rows = parseJson<{ items: Array<{ key_version: string }> }>(await cli(['accounts', 'list', '--json'], undefined, { KEYPOOL_ENCRYPTION_KEYS: ring })).items;
    expect(rows.every((r) => r.key_version === 'v2')).toBe(true);
  });

  describe('bad input exits 2 with a clear message', () => {
    it.each([
      ['bad CIDR', ['keys', 'create', '--name', 'x', '--allowed-ips', '10.0.0.0/33'], /--allowed-ips: .*10\.0\.0\.0\/33/],
      ['octal IPv4', ['keys', 'create', '--name', 'x', '--allowed-ips', '010.0.0.1'], /--allowed-ips: .*four decimal parts/],
      ['bad duration', ['keys', 'create', '--name', 'x', '--expires-in', '90 days'], /not a duration/],
      ['missing name', ['keys', 'create'], /--name is required/],
      ['bad grace', ['keys', 'rotate', MISSING_ID, '--grace', '31d'], /grace/],
      ['bad UUID', ['keys', 'revoke', 'not-a-uuid'], /<id>: "not-a-uuid" is not a UUID/],
      ['missing id', ['keys', 'revoke'], /missing argument <id>/],
      ['unknown flag', ['keys', 'list', '--bogus'], /unknown option --bogus/],
      ['unknown command', ['keys', 'frobnicate'], /unknown command/],
      ['unknown group', ['frobnicate'], /unknown command/],
      ['flag without value', ['keys', 'create', '--name'], /--name needs a value/],
      ['bad priority', ['mappings', 'add', '--pattern', 'a', '--match', 'exact', '--priority', '10'], /between 0 and 9/],
      ['bad match type', ['mappings', 'add', '--pattern', 'a', '--match', 'glob', '--priority', '1'], /glob/],
      ['unsafe regex', ['mappings', 'add', '--pattern', '^(a+)+$', '--match', 'regex', '--priority', '1'], /pattern/],
      ['window without a zone', ['mappings', 'add', '--pattern', 'a', '--match', 'exact', '--priority', '1', '--window', 'mon-fri 08:00-20:00'], /--window: "mon-fri 08:00-20:00" is not DAYS HH:MM-HH:MM ZONE/],
      ['window start = end', ['mappings', 'add', '--pattern', 'a', '--match', 'exact', '--priority', '1', '--window', 'mon 08:00-08:00 UTC'], /--window end: must differ/],
      ['window bad day', ['mappings', 'add', '--pattern', 'a', '--match', 'exact', '--priority', '1', '--window', 'monday 08:00-09:00 UTC'], /--window: "monday" is not a day/],
      ['unknown setting', ['config', 'set', 'priority.enable', 'true'], /unknown setting/],
      ['bad setting value', ['config', 'set', 'priority.enabled', 'maybe'], /not a boolean/],
      ['prune age too short', ['audit', 'prune', '--before', '10m'], /before: must be between/],
      ['prune age missing', ['audit', 'prune'], /before/],
      ['bad model glob', ['accounts', 'add', '--provider', 'openai', '--name', 'w', '--models', 'gpt-*-mini'], /--models: model "gpt-\*-mini" must be/],
      ['bad scope', ['accounts', 'add', '--provider', 'openai', '--name', 'w', '--scope', '/org'], /--scope: scope "\/org" must be/],
      ['bad weight', ['accounts', 'add', '--provider', 'openai', '--name', 'w', '--weight', '1001'], /--weight: must be between 1 and 1000/],
      ['--key-env with a value', ['accounts', 'add', '--provider', 'openai', '--name', 'w', '--key-env', 'sk-abc.def'], /NAME of an environment variable/],
      ['--key-env unset', ['accounts', 'add', '--provider', 'openai', '--name', 'w', '--key-env', 'KP_DEFINITELY_UNSET'], /not set/],
    ])('%s', async (_label, args, message) => {
      const result = await cli(args);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe('');
    });

    it('a key pasted where --key-env wants a variable name is never printed back', async () => {
      const pasted = `gsk_${randomBytes(20).toString('hex')}`;
      for (const json of [[], ['--json']]) {
        const result = await cli(['accounts', 'add', '--provider', 'openai', '--name', 'w', '--key-env', pasted, ...json]);
        expect(result.code).toBe(2);
        expect(result.stderr).toMatch(/--key-env is not set or empty/);
        expect(result.stderr + result.stdout).not.toContain(pasted.slice(4));
      }
    });

    it('with --json, errors are JSON on stderr in the admin API shape', async () => {
      const result = await cli(['keys', 'create', '--allowed-ips', '010.0.0.1', '--json']);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      const body = JSON.parse(result.stderr) as { error: { code: string; field: string; details: Array<{ field: string; code: string }> } };
      expect(body.error).toMatchObject({ code: 'required', field: '--name' });
      expect(body.error.details).toContainEqual(expect.objectContaining({ field: '--allowed-ips', code: 'invalid_cidr' }));
      const usage = await cli(['keys', 'list', '--nope', '--json']);
      expect(JSON.parse(usage.stderr)).toMatchObject({ error: { code: 'usage' } });
    });

    it('unknown provider (checked against the store, before any secret is read)', async () => {
      const result = await cli(['accounts', 'add', '--provider', 'nope', '--name', 'x'], `${UPSTREAM_SECRET}\n`);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/unknown provider "nope"; known: .*openai/);
    });

    it('unknown ids', async () => {
      for (const args of [
        ['keys', 'revoke', MISSING_ID],
        ['keys', 'rotate', MISSING_ID],
        ['accounts', 'disable', MISSING_ID],
        ['mappings', 'remove', MISSING_ID],
      ]) {
        const result = await cli(args);
        expect(result.code, args.join(' ')).toBe(2);
        expect(result.stderr).toMatch(/not found/i);
      }
    });

    it('a duplicate name is a conflict', async () => {
      const result = await cli(['accounts', 'add', '--provider', 'openai', '--name', 'main'], `${UPSTREAM_SECRET}-other\n`);
      expect(result.code).toBe(2);
    });

    it.each([
      ['--key', ['--key', UPSTREAM_SECRET]],
      ['--api-key=', [`--api-key=${UPSTREAM_SECRET}`]],
      ['a positional', [UPSTREAM_SECRET]],
    ])('refuses the upstream key in argv (%s) without echoing it', async (_label, extra) => {
      const result = await cli(['accounts', 'add', '--provider', 'openai', '--name', 'argv', ...extra]);
      expect(result.code).toBe(2);
      expect(result.stderr).not.toContain(SECRET_MARKER);
      if (extra[0]!.startsWith('--')) expect(result.stderr).toMatch(/stdin|--key-env/);
    });

    it.each([
      ['empty stdin', ''],
      ['whitespace inside', `${UPSTREAM_SECRET} ${UPSTREAM_SECRET}`],
      ['two lines', `${UPSTREAM_SECRET}\n${UPSTREAM_SECRET}\n`],
    ])('refuses a bad secret on stdin (%s) without echoing it', async (_label, input) => {
      const result = await cli(['accounts', 'add', '--provider', 'openai', '--name', 'bad-secret'], input);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/the API key \(stdin or --key-env\)/);
    });
  });

  it('prints help for every command and exits 0', async () => {
    for (const args of [['--help'], ['keys', '--help'], ['keys', 'create', '--help'], ['accounts', 'add', '-h'], ['config', 'set', '--help'], ['serve', '--help']]) {
      const result = await cli(args);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stdout).toMatch(/Usage: keypool/);
    }
  });
});

describe('keypool serve refuses an unauthenticated ext_proc listener', () => {
  it('exits 2 naming the variables, before opening any store', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'kp-cli-grpc-'));
    try {
      const result = await run(
        ['serve'],
        baseEnv({ KEYPOOL_DATA_DIR: join(dataDir, 'never-created'), KEYPOOL_GRPC_LISTEN: '0.0.0.0:0', KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0' }),
      );
      expect(result.code).toBe(2);
      for (const name of ['KEYPOOL_GRPC_LISTEN', 'KEYPOOL_GRPC_TLS_CERT', 'KEYPOOL_GRPC_TLS_KEY', 'KEYPOOL_GRPC_TLS_CLIENT_CA', 'KEYPOOL_GRPC_TOKEN']) {
        expect(result.stderr).toContain(name);
      }
      expect(existsSync(join(dataDir, 'never-created'))).toBe(false);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('keypool serve re-reads its gRPC TLS certificates on SIGHUP', { timeout: SLOW_TEST_MS }, () => {
  it('new connections get the rotated certificate without a restart', async () => {
    const pki = createTestPki();
    const [oldCa, newCa] = [pki.ca('old-ca'), pki.ca('new-ca')];
    const [oldCert, newCert] = [pki.leaf(oldCa, 'old', 'keypool.test'), pki.leaf(newCa, 'new', 'keypool.test')];
    const certFile = join(pki.dir, 'live.crt');
    const keyFile = join(pki.dir, 'live.key');
    copyFileSync(oldCert.certFile, certFile);
    copyFileSync(oldCert.keyFile, keyFile);
    const env = baseEnv({
      DATABASE_URL: 'memory://',
      KEYPOOL_GRPC_LISTEN: '127.0.0.1:0',
      KEYPOOL_GRPC_TLS_CERT: certFile,
      KEYPOOL_GRPC_TLS_KEY: keyFile,
      KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0',
      KEYPOOL_DEMO_SEED: 'false',
      ...secretsEnv,
    });
    const server = spawn(process.execPath, [CLI, 'serve'], { cwd: ROOT, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let serverOut = '';
    server.stdout.on('data', (chunk: Buffer) => (serverOut += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (serverOut += chunk.toString()));
    const exited = new Promise<number | null>((done) => server.on('exit', (code) => done(code)));
    const trusting = (ca: { certFile: string }) =>
      new ExtProcClient(address, {
        credentials: grpc.credentials.createSsl(readFileSync(ca.certFile)),
        channelOptions: { 'grpc.ssl_target_name_override': 'keypool.test', 'grpc.default_authority': 'keypool.test' },
      });
    const handshakes = async (ca: { certFile: string }): Promise<boolean> => {
      const client = trusting(ca);
      try {
        await client.check();
        return true;
      } catch {
        return false;
      } finally {
        client.close();
      }
    };
    let address = '';
    try {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const match = /ext_proc gRPC on (\S+?); channel tls;/.exec(serverOut);
        if (match) {
          address = match[1]!;
          break;
        }
        if (Date.now() > deadline || server.exitCode !== null) throw new Error(`keypool serve did not start:\n${serverOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await handshakes(oldCa)).toBe(true);
      copyFileSync(newCert.certFile, certFile);
      copyFileSync(newCert.keyFile, keyFile);
      server.kill('SIGHUP');
      const rotatedBy = Date.now() + 20_000;
      while (!(await handshakes(newCa))) {
        if (Date.now() > rotatedBy) throw new Error(`the new certificate was not served after SIGHUP:\n${serverOut}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await handshakes(oldCa)).toBe(false);
      expect(server.exitCode).toBeNull(); // SIGHUP reloads; it does not end the process
    } finally {
      server.kill('SIGTERM');
      const timer = setTimeout(() => server.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      pki.remove();
      expect(code, serverOut).toBe(0);
    }
  });
});

describe('keypool serve with the CLI in a second terminal (embedded store)', { timeout: SLOW_TEST_MS }, () => {
  let dataDir: string;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kp-cli-serve-'));
    env = baseEnv({
      KEYPOOL_DATA_DIR: dataDir,
      KEYPOOL_GRPC_LISTEN: '127.0.0.1:0',
      KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0',
      KEYPOOL_DEMO_SEED: 'false',
      ...secretsEnv,
    });
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('writes through the running server and stops cleanly on SIGTERM', async () => {
    const server = spawn(process.execPath, [CLI, 'serve'], { cwd: ROOT, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let serverOut = '';
    server.stdout.on('data', (chunk: Buffer) => (serverOut += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (serverOut += chunk.toString()));
    const exited = new Promise<number | null>((done) => server.on('exit', (code) => done(code)));
    try {
      const deadline = Date.now() + 120_000;
      while (!/ext_proc gRPC on /.test(serverOut)) {
        if (Date.now() > deadline || server.exitCode !== null) throw new Error(`keypool serve did not start:\n${serverOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const created = parseJson<{ key: { id: string } }>(await run(['keys', 'create', '--name', 'while-serving', '--json'], env));
      const rows = parseJson<{ items: Array<{ id: string }> }>(await run(['keys', 'list', '--json'], env)).items;
      expect(rows.map((r) => r.id)).toContain(created.key.id);
      const added = await run(['accounts', 'add', '--provider', 'openai', '--name', 'serving'], env, UPSTREAM_SECRET);
      expect(added.code).toBe(0);
    } finally {
      server.kill('SIGTERM');
      const timer = setTimeout(() => server.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      transcript.push(serverOut);
      expect(code, serverOut).toBe(0);
    }
  });
});

describe('keypool CLI on PostgreSQL', { timeout: SLOW_TEST_MS }, () => {
  const adminUrl = process.env.KEYPOOL_TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const database = `kp_cli_${randomBytes(6).toString('hex')}`;
  let admin: ReturnType<typeof postgres> | null = null;
  let available = false;
  let env: Record<string, string | undefined> = {};

  beforeAll(async () => {
    admin = postgres(adminUrl, { max: 1, onnotice: () => undefined, connect_timeout: 5 });
    try {
      await admin.unsafe(`CREATE DATABASE ${database}`);
      available = true;
    } catch (error) {
      await admin.end({ timeout: 1 }).catch(() => undefined);
      admin = null;
      if (process.env.KEYPOOL_REQUIRE_SERVICES === '1') throw error;
      console.warn(`PostgreSQL unreachable at ${adminUrl}: skipping the PostgreSQL CLI tests (${String(error)})`);
      return;
    }
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    env = baseEnv({ DATABASE_URL: url.toString(), KEYPOOL_DATA_DIR: join(tmpdir(), `${database}-unused`), ...secretsEnv });
  });

  afterAll(async () => {
    if (admin) {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
      await admin.end({ timeout: 5 });
    }
  });

  it('migrates, creates and lists a key, adds and lists an account', async (ctx) => {
    if (!available) ctx.skip();
    expect((await run(['keys', 'list'], env)).code).toBe(1);
    expect((await run(['migrate'], env)).code).toBe(0);

    const created = parseJson<{ key: { id: string }; api_key: string }>(
      await run(['keys', 'create', '--name', 'pg-bot', '--allowed-ips', '192.168.1.0/24', '--json'], env),
    );
    const rows = parseJson<{ items: Array<{ id: string; allowed_ips: string[] }> }>(await run(['keys', 'list', '--json'], env)).items;
    expect(rows.find((r) => r.id === created.key.id)?.allowed_ips).toEqual(['192.168.1.0/24']);
    expect(JSON.stringify(rows)).not.toContain(created.api_key);

    const added = await run(['accounts', 'add', '--provider', 'openai', '--name', 'pg'], env, UPSTREAM_SECRET);
    expect(added.code).toBe(0);
    const accounts = await run(['accounts', 'list'], env);
    expect(accounts.stdout).toMatch(/openai\s+pg/);
  });

  it('requires the secrets from the environment on PostgreSQL', async (ctx) => {
    if (!available) ctx.skip();
    const result = await run(['keys', 'list'], { ...env, KEYPOOL_ENCRYPTION_KEYS: undefined, KEYPOOL_KEY_PEPPER: undefined });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/KEYPOOL_ENCRYPTION_KEYS/);
  });
});
