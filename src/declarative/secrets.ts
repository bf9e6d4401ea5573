// Resolving a file's secret references ({env: VAR}, {file: PATH}) to the secrets themselves: the one I/O step
// between parsing and planning. Resolved secrets stay in memory, keyed by the entity's YAML path; problems name the
// reference, never its value.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { validateUpstreamSecret } from '../catalog/accounts/schema.js';
import { validateImportedKey } from '../catalog/keys/schema.js';
import type { DesiredState, FileProblem, SecretRef } from './model.js';

/** A secret file is one key; anything far longer is a mistake (a certificate bundle, the wrong path). */
const MAX_SECRET_FILE_BYTES = 64 * 1024;

export interface ResolvedSecrets {
  /** Upstream keys by the account entry's YAML path (`accounts[2]`). */
  readonly accountKeys: ReadonlyMap<string, string>;
  /** Imported client keys by the key entry's YAML path (`keys[0]`). */
  readonly clientKeys: ReadonlyMap<string, string>;
}

export interface SecretSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Relative `file:` paths resolve against this directory (the config file's). */
  readonly baseDir: string;
}

export async function resolveSecrets(
  state: DesiredState,
  sources: SecretSources,
): Promise<{ readonly secrets: ResolvedSecrets; readonly problems: readonly FileProblem[] }> {
  const problems: FileProblem[] = [];
  const accountKeys = new Map<string, string>();
  const clientKeys = new Map<string, string>();
  for (const account of state.accounts ?? []) {
    if (account.key === null) continue;
    const at = `${account.at}.key`;
    const secret = await read(account.key, sources, at, problems);
    if (secret === null) continue;
    const checked = validateUpstreamSecret(secret, 'key');
    if (checked.ok) accountKeys.set(account.at, checked.value);
    else problems.push({ path: at, line: null, message: `${describe(account.key)}: ${checked.errors[0]!.message}` });
  }
  for (const key of state.keys ?? []) {
    if (key.importKey === null) continue;
    const at = `${key.at}.import`;
    const secret = await read(key.importKey, sources, at, problems);
    if (secret === null) continue;
    const checked = validateImportedKey(secret, 'key');
    if (checked.ok) clientKeys.set(key.at, checked.value);
    else problems.push({ path: at, line: null, message: `${describe(key.importKey)}: ${checked.errors[0]!.message}` });
  }
  return { secrets: { accountKeys, clientKeys }, problems };
}

async function read(ref: SecretRef, sources: SecretSources, at: string, problems: FileProblem[]): Promise<string | null> {
  if ('env' in ref) {
    const value = sources.env[ref.env];
    if (value === undefined || value === '') {
      problems.push({ path: at, line: null, message: `environment variable ${ref.env} is not set or empty` });
      return null;
    }
    return value;
  }
  const path = isAbsolute(ref.file) ? ref.file : resolve(sources.baseDir, ref.file);
  try {
    const info = await stat(path);
    if (!info.isFile() || info.size > MAX_SECRET_FILE_BYTES) {
      problems.push({ path: at, line: null, message: `${ref.file} is not a file of at most ${MAX_SECRET_FILE_BYTES} bytes` });
      return null;
    }
    return trimOneNewline(await readFile(path, 'utf8'));
  } catch (error) {
    problems.push({ path: at, line: null, message: `cannot read ${ref.file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}` });
    return null;
  }
}

function describe(ref: SecretRef): string {
  return 'env' in ref ? `environment variable ${ref.env}` : `file ${ref.file}`;
}

/** Secret files usually end with one newline (`echo > file`); exactly one is removed. */
function trimOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}
