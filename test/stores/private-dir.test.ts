// The embedded data directory is owner-only whether keypool created it or found it: 0700, files 0600.
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../../src/stores/open-store.js';
import { loadSecrets } from '../../src/secrets/bootstrap.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function modesBelow(dir: string): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isSymbolicLink()) continue;
    const path = join(entry.parentPath, entry.name);
    out.push([path, (await stat(path)).mode & 0o777]);
  }
  return out;
}

describe('embedded data directory permissions', () => {
  it('a pre-existing 0755 directory with a 0666 file becomes 0700, and every file in it 0600', async () => {
    const root = await mkdtemp(join(tmpdir(), 'kp-perm-'));
    dirs.push(root);
    const dataDir = join(root, 'data');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dataDir, { mode: 0o755 });
    await chmod(dataDir, 0o755);
    await writeFile(join(dataDir, 'left-over'), 'x');
    await chmod(join(dataDir, 'left-over'), 0o666);

    await loadSecrets({ encryptionKeys: undefined, keyPepper: undefined, databaseUrl: undefined, dataDir });
    const store = await openStore({ dataDir, role: 'client' });
    try {
      await store.client.query('SELECT 1');
    } finally {
      await store.client.close();
    }

    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const modes = await modesBelow(dataDir);
    expect(modes.some(([path]) => path.includes('pgdata'))).toBe(true);
    expect(modes.some(([path]) => path.endsWith('secrets.json'))).toBe(true);
    for (const [path, mode] of modes) {
      const isDir = (await stat(path)).isDirectory();
      expect(mode, path).toBe(isDir ? 0o700 : 0o600);
    }
  }, 120_000);
});
