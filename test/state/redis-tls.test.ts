// rediss:// for real: a redis-server with TLS only (certificate for 127.0.0.1 from a throwaway CA made with openssl)
// and an ACL user. keypool's own code path runs in a child process, so Node's CA store is what an operator sets:
// NODE_EXTRA_CA_CERTS=ca.pem trusts the private CA; without it the handshake is refused (the certificate is verified).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisClusterToolsAvailable } from '../helpers/redis-cluster.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STORE = join(ROOT, 'dist', 'src', 'stores', 'redis-state.js');
const OPENSSL = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
const available = redisClusterToolsAvailable('redis over TLS') && OPENSSL;

/** One admission through RedisRateStateStore.connect(url) in a fresh Node process; prints ok or the error. */
const PROBE = `
  const { RedisRateStateStore } = await import(process.env.STORE);
  const store = RedisRateStateStore.connect(process.env.URL, {}, { retryStrategy: () => null });
  try {
    await store.ready(3000);
    const r = await store.admit({ pool: 'tls', candidates: [{ id: 'a', rpmLimit: 5, tpmLimit: null, maxConcurrency: null }], leastLoaded: false, nowMs: Date.now(), leaseMs: 60000 });
    console.log(r.ok ? 'admitted' : 'denied');
  } catch (error) {
    console.log('failed: ' + (error && error.message));
  } finally {
    await store.close();
  }
`;

function probe(url: string, env: Record<string, string>): string {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE], {
    env: { PATH: process.env.PATH ?? '', STORE, URL: url, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return run.stdout.trim();
}

describe.skipIf(!available)('redis over TLS (rediss://) with an ACL user', () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kp-redis-tls-'));
    const ssl = (args: string[]) => {
      const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`openssl ${args[0]}: ${run.stderr}`);
    };
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=keypool test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'server.pem']);
    port = await freePort();
    server = spawn(
      'redis-server',
      ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', 'server.pem', '--tls-key-file', 'server.key',
        '--tls-ca-cert-file', 'ca.pem', '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', '--dir', dir,
        '--user', 'default', 'off', '--user', 'keypool', 'on', '>tls-s3cret', '~*', '+@all'],
      { cwd: dir, stdio: 'ignore' },
    );
    // Ready when a TLS probe stops failing with a connection error.
    for (let i = 0; i < 50; i++) {
      if (probe(`rediss://keypool:tls-s3cret@127.0.0.1:${port}`, { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') }) === 'admitted') break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 60_000);

  afterAll(() => {
    server?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('admits over TLS as the ACL user when the private CA is trusted through NODE_EXTRA_CA_CERTS', () => {
    expect(probe(`rediss://keypool:tls-s3cret@127.0.0.1:${port}`, { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') })).toBe('admitted');
  });

  it('refuses a server certificate from an untrusted CA', () => {
    expect(probe(`rediss://keypool:tls-s3cret@127.0.0.1:${port}`, {})).toMatch(/^failed: /);
  });

  it('refuses a wrong password, and plain redis:// on the TLS port', () => {
    expect(probe(`rediss://keypool:wrong@127.0.0.1:${port}`, { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') })).toMatch(/^failed: /);
    expect(probe(`redis://keypool:tls-s3cret@127.0.0.1:${port}`, {})).toMatch(/^failed: /);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probeServer = createServer();
    probeServer.once('error', reject);
    probeServer.listen(0, '127.0.0.1', () => {
      const address = probeServer.address();
      probeServer.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
