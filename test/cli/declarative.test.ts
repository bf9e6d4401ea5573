// `keypool apply|diff|dump` as users run them (the built CLI, embedded store in a temporary data dir): exit codes CI
// can gate on, errors with file path and YAML path, `dump | apply -f -` changing nothing, secrets never printed.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const UPSTREAM = `sk-upstream-${randomBytes(16).toString('hex')}`;
const IMPORTED = `team-a-${randomBytes(12).toString('hex')}`;
/** Each run starts Node and PGlite; a busy 2-core runner can make that slow. */
const SLOW_TEST_MS = 240_000;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let dir: string;
const transcript: string[] = [];

function keypool(args: readonly string[], input = '', extraEnv: Record<string, string> = {}): Promise<Run> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    LOG_LEVEL: 'silent',
    KEYPOOL_DATA_DIR: join(dir, 'data'),
    KEYPOOL_DEMO_SEED: 'false',
    OPENAI_KEY_1: UPSTREAM,
    LEGACY_KEY: IMPORTED,
    ...extraEnv,
  };
  for (const name of ['DATABASE_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete env[name];
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      transcript.push(stdout, stderr);
      resolveRun({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const FILE = `version: 1
accounts:
  - provider: openai
    name: prod-1
    key: {env: OPENAI_KEY_1}
    rpm: 500
keys:
  - name: legacy
    tenant: team-a
    import: {env: LEGACY_KEY}
mappings:
  - {match: prefix, pattern: kp_ci_, priority: 1}
settings:
  priority.enabled: true
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kp-declarative-'));
  await writeFile(join(dir, 'keypool.yaml'), FILE);
  await writeFile(join(dir, 'bad.yaml'), FILE.replace('rpm: 500', 'rpm: 0'));
  expect((await keypool(['migrate'])).code).toBe(0);
}, SLOW_TEST_MS);

afterAll(async () => {
  // Neither secret may appear in anything the CLI printed.
  for (const text of transcript) {
    expect(text).not.toContain(UPSTREAM);
    expect(text).not.toContain(IMPORTED);
  }
  await rm(dir, { recursive: true, force: true });
});

describe('keypool diff / apply / dump', () => {
  it(
    'diff exits 3 with changes pending, 2 on bad input naming file, line and YAML path; apply exits 0; then diff exits 0',
    async () => {
      const pending = await keypool(['diff', '-f', 'keypool.yaml']);
      expect(pending.code).toBe(3);
      expect(pending.stdout).toContain('+ account openai/prod-1: weight 1, tier 0, rpm 500, status active, key: set');
      expect(pending.stdout).toContain('4 change(s): 3 to create, 1 to update, 0 to delete');

      const bad = await keypool(['diff', '-f', 'bad.yaml']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('bad.yaml:6: accounts[0].rpm: must be between 1 and 2147483647 (got 0)');

      const applied = await keypool(['apply', '-f', 'keypool.yaml', '--json']);
      expect(applied.code).toBe(0);
      const body = JSON.parse(applied.stdout) as { in_sync: boolean; applied: boolean; changes: unknown[]; issued_keys: unknown[] };
      expect(body).toMatchObject({ in_sync: false, applied: true, issued_keys: [] });
      expect(body.changes).toHaveLength(4);

      const again = await keypool(['apply', '-f', 'keypool.yaml']);
      expect(again).toMatchObject({ code: 0, stdout: 'in sync: no changes\n' });
      expect((await keypool(['diff', '-f', 'keypool.yaml'])).code).toBe(0);
    },
    SLOW_TEST_MS,
  );

  it(
    'dump | apply -f - changes nothing; a rotated upstream key diffs as `key: changed`',
    async () => {
      const dump = await keypool(['dump']);
      expect(dump.code).toBe(0);
      expect(dump.stdout).toContain('name: prod-1');
      const reapplied = await keypool(['apply', '-f', '-', '--prune'], dump.stdout);
      expect(reapplied).toMatchObject({ code: 0, stdout: 'in sync: no changes\n' });

      const rotated = `sk-rotated-${randomBytes(16).toString('hex')}`;
      const changed = await keypool(['diff', '-f', 'keypool.yaml'], '', { OPENAI_KEY_1: rotated });
      expect(changed.code).toBe(3);
      expect(changed.stdout).toBe('~ account openai/prod-1: key: changed\n1 change(s): 0 to create, 1 to update, 0 to delete\n');
    },
    SLOW_TEST_MS,
  );
});

describe('keys users already have, and keys mappings can match', () => {
  it(
    'keys import reads the key from stdin or --key-env and stores only its digest; keys create --prefix issues kp_<prefix>_',
    async () => {
      const fromStdin = `sk-legacy-${randomBytes(10).toString('hex')}`;
      const imported = await keypool(['keys', 'import', '--name', 'from-stdin', '--tenant', 'team-b', '--json'], `${fromStdin}\n`);
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stdout + imported.stderr).not.toContain(fromStdin);
      expect(JSON.parse(imported.stdout).key).toMatchObject({ name: 'from-stdin', tenant_id: 'team-b', status: 'active' });

      const viaEnv = await keypool(['keys', 'import', '--name', 'from-env', '--key-env', 'ANOTHER_KEY'], '', { ANOTHER_KEY: `another-${'x'.repeat(16)}` });
      expect(viaEnv.code, viaEnv.stderr).toBe(0);
      expect(viaEnv.stdout).toContain('Imported key');

      const short = await keypool(['keys', 'import', '--name', 'short'], 'too-short\n');
      expect(short.code).toBe(2);
      expect(short.stderr).toContain('must be at least 16 bytes');
      expect(short.stderr).not.toContain('too-short');
      expect((await keypool(['keys', 'import', '--name', 'argv', '--key', 'sk-in-argv'])).code).toBe(2);

      const prefixed = await keypool(['keys', 'create', '--name', 'prod-svc', '--prefix', 'prod', '--json']);
      expect(prefixed.code, prefixed.stderr).toBe(0);
      expect(JSON.parse(prefixed.stdout).api_key).toMatch(/^kp_prod_[0-9A-Za-z]{40}$/);
    },
    SLOW_TEST_MS,
  );
});

describe('operator commands for what the file can say', () => {
  it(
    'providers list/set, accounts update by name, mappings add --tenant',
    async () => {
      const set = await keypool(['providers', 'set', 'anthropic', '--strategy', 'priority', '--json']);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout).provider).toMatchObject({ slug: 'anthropic', default_strategy: 'priority' });
      const listed = await keypool(['providers', 'list']);
      expect(listed.stdout).toMatch(/anthropic\s+Anthropic\s+x-api-key\s+anthropic\s+priority/);
      const badStrategy = await keypool(['providers', 'set', 'anthropic', '--strategy', 'fastest']);
      expect(badStrategy.code).toBe(2);
      expect(badStrategy.stderr).toContain('--strategy: "fastest" is not one of');

      const updated = await keypool(['accounts', 'update', 'prod-1', '--weight', '3', '--rpm', 'none', '--tag', 'team=b', '--json']);
      expect(updated.code, updated.stderr).toBe(0);
      expect(JSON.parse(updated.stdout).account).toMatchObject({ name: 'prod-1', weight: 3, rpm_limit: null, tags: { team: 'b' } });
      const badTier = await keypool(['accounts', 'update', 'prod-1', '--tier', '101']);
      expect(badTier.code).toBe(2);
      expect(badTier.stderr).toContain('--tier: must be between 0 and 100');

      const mapping = await keypool(['mappings', 'add', '--pattern', 'kp_prod_', '--match', 'prefix', '--priority', '1', '--tenant', 'prod', '--json']);
      expect(mapping.code, mapping.stderr).toBe(0);
      expect(JSON.parse(mapping.stdout).mapping).toMatchObject({ pattern: 'kp_prod_', match_type: 'prefix', tenant_id: 'prod' });
    },
    SLOW_TEST_MS,
  );
});
