// deploy/systemd/keypool.service: `systemd-analyze verify` and the offline security score (when systemd-analyze is
// installed; no systemd runs as PID 1 here, so the unit itself is never started), and its ExecStart script run the way
// systemd would run it (unit line continuations joined, $$ unescaped, credentials in $CREDENTIALS_DIRECTORY): keypool
// serves with the secrets read from the credential files, which the admin token proves.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describePostgres } from '../helpers/db.js';
import { REPO_ROOT } from '../helpers/envoy.js';
import { Deployment } from '../replicas/deployment.js';
import { sleep } from '../replicas/traffic.js';

const UNIT = join(REPO_ROOT, 'deploy', 'systemd', 'keypool.service');
const unit = readFileSync(UNIT, 'utf8');
const SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
if (!SYSTEMD_ANALYZE) console.warn('[skip] systemd unit: systemd-analyze not installed (apt-get install systemd)');

/** Settings of the unit, continuation lines joined as systemd joins them. */
function directives(): Array<[string, string]> {
  return unit
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => /^[A-Z]\w*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]);
}

describe('systemd unit', () => {
  it.skipIf(!SYSTEMD_ANALYZE)('passes systemd-analyze verify', () => {
    const run = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    expect(run.stderr + run.stdout).toBe('');
    expect(run.status).toBe(0);
  });

  it.skipIf(!SYSTEMD_ANALYZE)('scores as well hardened offline (systemd-analyze security exposure at most 2.0 of 10)', () => {
    const run = spawnSync('systemd-analyze', ['security', '--offline=yes', UNIT], { encoding: 'utf8' });
    const exposure = Number(/Overall exposure level for keypool\.service: ([\d.]+)/.exec(run.stdout)?.[1]);
    expect(exposure).toBeLessThanOrEqual(2);
  });

  it('runs as a dynamic user with a state directory, a read-only system and every secret as a credential', () => {
    const settings = new Map<string, string[]>();
    for (const [key, value] of directives()) settings.set(key, [...(settings.get(key) ?? []), value]);
    expect(settings.get('DynamicUser')).toEqual(['yes']);
    expect(settings.get('ProtectSystem')).toEqual(['strict']);
    expect(settings.get('StateDirectory')).toEqual(['keypool']);
    expect(settings.get('NoNewPrivileges')).toEqual(['yes']);
    expect(settings.get('CapabilityBoundingSet')).toEqual(['']);
    const credentials = (settings.get('LoadCredential') ?? []).map((c) => c.split(':')[0]);
    expect(credentials).toEqual(['encryption-keys', 'key-pepper', 'admin-token']);
    // No secret as a plain setting.
    for (const env of settings.get('Environment') ?? []) expect(env).not.toMatch(/KEY_PEPPER|ENCRYPTION_KEYS|ADMIN_TOKEN|DATABASE_URL/);
    expect(settings.get('Environment')).toContain('KEYPOOL_GRPC_LISTEN=127.0.0.1:50051');
  });
});

describePostgres('the unit\'s ExecStart, run as systemd would run it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-systemd-'));
  let deployment: Deployment | undefined;
  afterAll(async () => {
    await deployment?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads every secret from $CREDENTIALS_DIRECTORY and serves', async () => {
    deployment = await Deployment.create();
    const adminToken = 'a'.repeat(48);
    writeFileSync(join(dir, 'encryption-keys'), `${deployment.secrets.KEYPOOL_ENCRYPTION_KEYS}\n`);
    writeFileSync(join(dir, 'key-pepper'), `${deployment.secrets.KEYPOOL_KEY_PEPPER}\n`);
    writeFileSync(join(dir, 'admin-token'), `${adminToken}\n`);
    writeFileSync(join(dir, 'database-url'), `${deployment.databaseUrl()}\n`);
    const execStart = directives().find(([key]) => key === 'ExecStart')![1].replace(/\$\$/g, '$');
    const [, shell, script] = /^(\/bin\/sh) -c '(.*)'$/.exec(execStart.trim())!;
    const adminPort = await freePort();
    const child = spawn(shell!, ['-c', script!.replace('/opt/keypool', REPO_ROOT)], {
      env: {
        PATH: process.env.PATH ?? '',
        CREDENTIALS_DIRECTORY: dir,
        NODE_ENV: 'production',
        KEYPOOL_GRPC_LISTEN: '127.0.0.1:0',
        KEYPOOL_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        KEYPOOL_DATA_DIR: join(dir, 'state'),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      let status = 0;
      for (let i = 0; i < 60 && status !== 200 && child.exitCode === null; i++) {
        await sleep(500);
        status = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0);
      }
      expect(status, output).toBe(200);
      // The admin token came from its credential file (the trailing newline dropped by the shell).
      const authorized = await fetch(`http://127.0.0.1:${adminPort}/admin/providers`, { headers: { authorization: `Bearer ${adminToken}` } });
      expect(authorized.status).toBe(200);
      const refused = await fetch(`http://127.0.0.1:${adminPort}/admin/providers`, { headers: { authorization: 'Bearer wrong' } });
      expect(refused.status).toBe(401);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }, 60_000);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
