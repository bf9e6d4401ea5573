// Builds, in a temp dir, the layout an operator installs: kong/plugins/keypool.cjs (a byte copy of the shipped
// entry) next to dist/ and package.json. The shipped entry finds dist/src/adapters/kong/plugin.js relative to
// itself, and that file opens dist/src/runtime.js: with the test runtime there (test/kong/test-runtime.ts: the real
// engine over a static snapshot), the real entry and the real lazy loading run with no test seam in shipped code.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

export interface PluginTree {
  readonly root: string;
  readonly pluginsDir: string;
  /** Where a plugin server started for this tree listens (its --kong-prefix). */
  readonly prefix: string;
  remove(): Promise<void>;
}

/** `test`: dist/src/runtime.js serves test/kong/test-runtime.ts; `real`: the project's src/runtime.ts. */
export async function buildPluginTree(runtime: 'test' | 'real'): Promise<PluginTree> {
  const root = await mkdtemp(path.join(tmpdir(), 'kp-kong-'));
  const sources = ['src/adapters/kong/plugin.ts', runtime === 'test' ? 'test/kong/test-runtime.ts' : 'src/runtime.ts'];
  // Only the files the plugin server runs, emitted as the project build would (types are checked elsewhere).
  await promisify(execFile)(process.execPath, [
    TSC, '--ignoreConfig', '--noCheck', '--outDir', path.join(root, 'dist'), '--rootDir', REPO,
    '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node',
    '--skipLibCheck', '--resolveJsonModule', ...sources.map((file) => path.join(REPO, file)),
  ]);
  if (runtime === 'test') {
    await writeFile(
      path.join(root, 'dist', 'src', 'runtime.js'),
      "export { openTestRuntime as openRuntime } from '../test/kong/test-runtime.js';\n",
    );
  }
  const pluginsDir = path.join(root, 'kong', 'plugins');
  const prefix = path.join(root, 'prefix');
  await mkdir(pluginsDir, { recursive: true });
  await mkdir(prefix);
  await copyFile(path.join(REPO, 'kong', 'plugins', 'keypool.cjs'), path.join(pluginsDir, 'keypool.cjs'));
  await copyFile(path.join(REPO, 'package.json'), path.join(root, 'package.json'));
  await symlink(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'));
  await symlink(path.join(REPO, 'sql'), path.join(root, 'sql')); // migrations, found upwards from dist/src/stores
  return { root, pluginsDir, prefix, remove: () => rm(root, { recursive: true, force: true }) };
}

export const REPO_ROOT = REPO;
