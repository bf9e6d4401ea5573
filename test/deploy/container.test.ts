// The container image without a Docker engine: every COPY source of the Dockerfile exists and survives .dockerignore,
// the build stage's compile step (tsconfig.build.json) succeeds, and the runtime stage's layout (that dist/src, sql/,
// proto/, node_modules, readyz.mjs) assembled in a temporary directory runs the image's entrypoint, `keypool serve`,
// which then passes the image's HEALTHCHECK script.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { REPO_ROOT } from '../helpers/envoy.js';
import { Deployment } from '../replicas/deployment.js';
import { sleep } from '../replicas/traffic.js';

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

/**
 * COPY instructions of the Dockerfile (of the last, runtime stage with `runtimeOnly`): sources, destination, and the
 * stage they come from (null = build context).
 */
function copies(runtimeOnly = false): Array<{ from: string | null; sources: string[]; destination: string }> {
  const lines = dockerfile.split('\n');
  const lastFrom = lines.map((line) => /^FROM\s/.test(line)).lastIndexOf(true);
  return lines
    .filter((line, i) => /^COPY\s/.test(line) && (!runtimeOnly || i > lastFrom))
    .map((line) => {
      const words = line.trim().split(/\s+/).slice(1);
      const from = words[0]?.startsWith('--from=') ? words.shift()!.slice('--from='.length) : null;
      const destination = words.pop()!;
      return { from, sources: words, destination };
    });
}

/** Whether .dockerignore excludes a context path (the patterns used here are plain names and *.ext). */
function excluded(path: string): boolean {
  return ignored.some((pattern) => {
    if (pattern.startsWith('*.')) return path.endsWith(pattern.slice(1));
    return path === pattern || path.startsWith(`${pattern}/`);
  });
}

describe('Dockerfile', () => {
  it('copies only sources that exist in the build context and that .dockerignore keeps', () => {
    const fromContext = copies().filter((c) => c.from === null);
    expect(fromContext.length).toBeGreaterThanOrEqual(5);
    for (const { sources } of fromContext) {
      for (const source of sources) {
        expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
        expect(excluded(source), `${source} is excluded by .dockerignore`).toBe(false);
      }
    }
  });

  it('builds from two node:20-slim stages and runs as a numeric non-root user, keypool serve, with a HEALTHCHECK on /readyz', () => {
    expect(dockerfile.match(/^FROM node:20-slim/gm)?.length).toBe(2);
    expect(dockerfile).toMatch(/^USER 10001:10001$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["keypool"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["serve"\]$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*CMD \["node", "\/app\/readyz\.mjs"\]$/m);
    expect(readFileSync(join(REPO_ROOT, 'deploy/docker/readyz.mjs'), 'utf8')).toContain('/readyz');
    // Secrets and local state never enter the build context.
    for (const path of ['.keypool', '.env', 'node_modules', 'dist', '.git']) expect(excluded(path), path).toBe(true);
    // The image's build compiles what tsconfig.build.json includes: src/ only (the context has no bench/ or test/).
    expect(JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')).include).toEqual(['src/**/*.ts']);
  });
});

describePostgres('the runtime layout of the image', () => {
  const app = mkdtempSync(join(tmpdir(), 'kp-image-'));
  let deployment: Deployment | undefined;
  afterAll(async () => {
    await deployment?.close();
    rmSync(app, { recursive: true, force: true });
  });

  it('`keypool serve` starts from dist/src + sql + proto + node_modules alone and passes readyz.mjs', async () => {
    // The build stage's compile step (tsconfig.build.json), into a directory of its own.
    const build = join(app, '.build');
    const compiled = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript-native/bin/tsc'), '-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', build], { encoding: 'utf8' });
    expect(compiled.status, compiled.stdout + compiled.stderr).toBe(0);
    // The runtime stage, as the Dockerfile lays it out under /app (node_modules linked: the test machine's install).
    for (const { from, sources, destination } of copies(true)) {
      for (const source of sources) {
        const relative = from === null ? source : source.replace(/^\/src\//, '');
        if (relative === 'node_modules') continue;
        // dist/src from the compile above; dist/ui is the dashboard bundle `npm run build` made (scripts/build-ui.mjs).
        const origin = relative.startsWith('dist/src') ? join(build, relative.slice('dist/'.length)) : join(REPO_ROOT, relative);
        cpSync(origin, join(app, destination === './' ? relative : destination.replace(/^\.\//, '')), { recursive: true });
      }
    }
    rmSync(build, { recursive: true, force: true });
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(app, 'node_modules'));
    expect(existsSync(join(app, 'src')), 'the image has no src/').toBe(false);
    deployment = await Deployment.create();
    const env = {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      DATABASE_URL: deployment.databaseUrl(),
      ...deployment.secrets,
      KEYPOOL_GRPC_LISTEN: '127.0.0.1:0',
      KEYPOOL_ADMIN_LISTEN: `127.0.0.1:${await freePort()}`,
      KEYPOOL_DATA_DIR: join(app, 'data'),
      LOG_LEVEL: 'warn',
    };
    const readyz = () => spawnSync(process.execPath, [join(app, 'readyz.mjs')], { env, timeout: 10_000 }).status;
    // Nothing listens yet: the health check fails.
    expect(readyz()).toBe(1);
    const child = spawn(process.execPath, [join(app, 'dist/src/cli/main.js'), 'serve'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      let status = readyz();
      for (let i = 0; i < 60 && status !== 0 && child.exitCode === null; i++) {
        await sleep(500);
        status = readyz();
      }
      expect(status, output).toBe(0);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }, 60_000);
});

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
