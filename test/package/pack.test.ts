// The installable package: `npm pack` yields a tarball with what `keypool serve` and the Kong plugin need, and the
// tarball installs into a fresh prefix offline, where `keypool --help` and `keypool migrate` work. Offline: the
// prefix is seeded with this checkout's production dependencies (npm then has nothing to fetch), so the test needs
// no registry and checks exactly the dependency versions the lockfile pins.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const SLOW_TEST_MS = 300_000;

let dir: string;
let tarball: string;
let files: string[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kp-pack-'));
  const packed = await run(NPM, ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(dir, info!.filename);
  files = info!.files.map((f) => f.path);
}, SLOW_TEST_MS);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('holds what serve, migrate and the Kong plugin load, and no tests or sources', () => {
    for (const needed of [
      'package.json',
      'dist/src/cli/main.js',
      'dist/src/adapters/kong/plugin.js',
      'sql/migrations/0001_init.sql',
      'sql/seed/providers.sql',
      'proto/grpc/health/v1/health.proto',
      'kong/plugins/keypool.cjs',
      'kong/bin/keypool-pluginserver',
      'kong/kong.yml',
      'envoy/envoy.yaml',
      'schema/keypool.schema.json',
      'examples/keypool.yaml',
    ]) {
      expect(files, needed).toContain(needed);
    }
    expect(files.filter((f) => f.startsWith('dist/test/') || f.startsWith('test/') || f.startsWith('src/'))).toEqual([]);
  });

  it(
    'installs offline into a fresh prefix; keypool --help and keypool migrate run from there',
    async () => {
      const prefix = join(dir, 'prefix');
      await seedProductionDependencies(join(prefix, 'node_modules'));
      await run(NPM, ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', prefix, tarball], { cwd: dir });
      const bin = join(prefix, 'node_modules/.bin/keypool');
      expect(existsSync(bin)).toBe(true);
      const env: NodeJS.ProcessEnv = { ...process.env, KEYPOOL_DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'silent' };
      for (const name of ['DATABASE_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete env[name];
      const help = await run(bin, ['--help'], { cwd: dir, env });
      expect(help.stdout).toContain('Usage: keypool <command>');
      const migrated = await run(bin, ['migrate'], { cwd: dir, env });
      expect(migrated.stdout).toContain('0001_init.sql');
      // The installed copy found its own sql/ (not this checkout's): the package is self-contained.
      expect(existsSync(join(prefix, 'node_modules/keypool/sql/migrations/0001_init.sql'))).toBe(true);
    },
    SLOW_TEST_MS,
  );
});

/** Copies the checkout's production dependency tree (`npm ls --omit=dev`) into a prefix's node_modules. */
async function seedProductionDependencies(target: string): Promise<void> {
  const listed = await run(NPM, ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  const modules = join(ROOT, 'node_modules');
  const topLevel = new Set(
    listed.stdout
      .split('\n')
      .filter((line) => line.startsWith(modules))
      .map((line) => relative(modules, line))
      .filter((path) => !path.includes('node_modules')),
  );
  await mkdir(target, { recursive: true });
  for (const path of topLevel) await cp(join(modules, path), join(target, path), { recursive: true, dereference: true });
}
