import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { digestKey } from '../../src/core/apikey.js';
import { loadSecrets, SecretsConfigError } from '../../src/secrets/bootstrap.js';
import { Keyring } from '../../src/secrets/keyring.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kp-secrets-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

const ACCOUNT = '6f1c1d52-1111-4a2b-9c3d-000000000001';

describe('loadSecrets', () => {
  it('embedded default: generates both into <dataDir>/secrets.json (0600) once, then reuses them', async () => {
    const dataDir = join(await tempDir(), 'nested', '.keypool');
    const first = await loadSecrets({ encryptionKeys: undefined, keyPepper: undefined, databaseUrl: undefined, dataDir });
    expect(first).toMatchObject({ origin: 'data-dir', created: true, file: join(dataDir, 'secrets.json') });
    expect(first.warning).toMatch(/KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER are not set/);
    expect((await stat(join(dataDir, 'secrets.json'))).mode & 0o777).toBe(0o600);
    const second = await loadSecrets({ encryptionKeys: '', keyPepper: '  ', databaseUrl: '', dataDir });
    expect(second).toMatchObject({ origin: 'data-dir', created: false });
    expect(second.warning).not.toBeNull();
    expect(digestKey(second.pepper, 'kp_x')).toBe(digestKey(first.pepper, 'kp_x'));
    expect(second.keyring.decrypt(first.keyring.encrypt('sk-1', ACCOUNT), ACCOUNT)).toBe('sk-1');
    // The warning names the file, never the secrets.
    const file = JSON.parse(await readFile(join(dataDir, 'secrets.json'), 'utf8')) as { encryptionKeys: string; keyPepper: string };
    expect(first.warning).not.toContain(file.encryptionKeys.split(':')[1]);
    expect(first.warning).not.toContain(file.keyPepper.split(':')[1]);
  });

  it('two processes starting together on an empty data dir agree on one set of secrets', async () => {
    const dataDir = await tempDir();
    const source = { encryptionKeys: undefined, keyPepper: undefined, databaseUrl: undefined, dataDir };
    const [a, b] = await Promise.all([loadSecrets(source), loadSecrets(source)]);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    expect(digestKey(a.pepper, 'kp_y')).toBe(digestKey(b.pepper, 'kp_y'));
  });

  it('uses the environment when both variables are set', async () => {
    const spec = Keyring.generateSpec('v3');
    const loaded = await loadSecrets({
      encryptionKeys: spec,
      keyPepper: 'p'.repeat(32),
      databaseUrl: 'postgres://db/keypool',
      dataDir: await tempDir(),
    });
    expect(loaded).toMatchObject({ origin: 'env', warning: null, file: null });
    expect(loaded.keyring.currentVersion).toBe('v3');
  });

  it('memory:// gets throwaway secrets and writes nothing', async () => {
    const dataDir = join(await tempDir(), 'unused');
    const loaded = await loadSecrets({ encryptionKeys: undefined, keyPepper: undefined, databaseUrl: 'memory://', dataDir });
    expect(loaded.origin).toBe('ephemeral');
    await expect(stat(dataDir)).rejects.toThrow();
  });

  it('DATABASE_URL without secrets is a clear startup error', async () => {
    await expect(
      loadSecrets({ encryptionKeys: undefined, keyPepper: undefined, databaseUrl: 'postgres://db/keypool', dataDir: await tempDir() }),
    ).rejects.toThrow(SecretsConfigError);
  });

  it('only one of the two variables is an error naming the missing one', async () => {
    await expect(
      loadSecrets({ encryptionKeys: Keyring.generateSpec(), keyPepper: undefined, databaseUrl: undefined, dataDir: await tempDir() }),
    ).rejects.toThrow(/KEYPOOL_KEY_PEPPER is not set/);
  });
});
