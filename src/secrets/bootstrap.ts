// Where the service's two secrets come from: the key ring for upstream keys and the pepper for client key digests.
//
// - Both KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER set: used as given (production).
// - Neither set, embedded store on disk (no DATABASE_URL): generated once into <dataDir>/secrets.json (mode 0600)
//   and reused on every later start, so `npm start` works on an empty machine. The caller logs `warning` once.
// - Neither set, DATABASE_URL=memory://: generated in memory only (the data is thrown away at exit anyway).
// - DATABASE_URL=postgres://... with either missing, or only one of the two set: a SecretsConfigError telling the
//   operator what to set. Replicas sharing a database must share the secrets, so keypool never invents them there.
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile } from 'node:fs/promises';
import { ensurePrivateDir } from '../stores/private-dir.js';
import { join } from 'node:path';
import { Keyring } from './keyring.js';
import { generatePepperSpec, parsePepper } from './pepper.js';

export const SECRETS_FILE = 'secrets.json';

export interface SecretsSource {
  /** KEYPOOL_ENCRYPTION_KEYS. */
  readonly encryptionKeys: string | undefined;
  /** KEYPOOL_KEY_PEPPER. */
  readonly keyPepper: string | undefined;
  /** DATABASE_URL (undefined = embedded on disk). */
  readonly databaseUrl: string | undefined;
  /** KEYPOOL_DATA_DIR. */
  readonly dataDir: string;
}

export type SecretsOrigin = 'env' | 'data-dir' | 'ephemeral';

export interface LoadedSecrets {
  readonly keyring: Keyring;
  readonly pepper: Uint8Array;
  readonly origin: SecretsOrigin;
  /** The secrets file in the data dir (origin 'data-dir'). */
  readonly file: string | null;
  /** True when this call created the secrets (first start). */
  readonly created: boolean;
  /** One line for the caller to log at warn level, or null in production mode. Never contains the secrets. */
  readonly warning: string | null;
}

export class SecretsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretsConfigError';
  }
}

interface SecretsFile {
  readonly version: 1;
  readonly encryptionKeys: string;
  readonly keyPepper: string;
}

export async function loadSecrets(source: SecretsSource): Promise<LoadedSecrets> {
  const keys = nonEmpty(source.encryptionKeys);
  const pepper = nonEmpty(source.keyPepper);
  if (keys !== undefined && pepper !== undefined) {
    return { keyring: Keyring.parse(keys), pepper: parsePepper(pepper), origin: 'env', file: null, created: false, warning: null };
  }
  if (keys !== undefined || pepper !== undefined) {
    const missing = keys === undefined ? 'KEYPOOL_ENCRYPTION_KEYS' : 'KEYPOOL_KEY_PEPPER';
    throw new SecretsConfigError(`${missing} is not set: set both KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER, or neither for the embedded default`);
  }
  const url = nonEmpty(source.databaseUrl);
  if (url === 'memory://') {
    return {
      keyring: Keyring.parse(Keyring.generateSpec()),
      pepper: parsePepper(generatePepperSpec()),
      origin: 'ephemeral',
      file: null,
      created: true,
      warning: 'KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER are not set: using throwaway secrets for the in-memory store',
    };
  }
  if (url !== undefined) {
    throw new SecretsConfigError(
      'DATABASE_URL is set but KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER are not: every replica must use the same secrets. ' +
        'Generate them once with: KEYPOOL_ENCRYPTION_KEYS="v1:$(openssl rand -base64 32)" KEYPOOL_KEY_PEPPER="base64:$(openssl rand -base64 32)"',
    );
  }
  const { file, created, content } = await readOrCreateSecretsFile(source.dataDir);
  return {
    keyring: Keyring.parse(content.encryptionKeys, `${file} encryptionKeys`),
    pepper: parsePepper(content.keyPepper, `${file} keyPepper`),
    origin: 'data-dir',
    file,
    created,
    warning:
      `KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER are not set: ${created ? 'generated' : 'using'} embedded secrets in ${file} ` +
      '(fine for a laptop; set both variables for production and keep them out of the data directory)',
  };
}

async function readOrCreateSecretsFile(dataDir: string): Promise<{ file: string; created: boolean; content: SecretsFile }> {
  const file = join(dataDir, SECRETS_FILE);
  await ensurePrivateDir(dataDir);
  const fresh: SecretsFile = { version: 1, encryptionKeys: Keyring.generateSpec(), keyPepper: generatePepperSpec() };
  try {
    // O_EXCL: when two processes start on an empty data dir together, exactly one writes and both read the same.
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(fresh, null, 2)}\n`, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    return { file, created: true, content: fresh };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const content = await readSecretsFile(file);
  await chmod(file, 0o600).catch(() => undefined);
  return { file, created: false, content };
}

async function readSecretsFile(file: string): Promise<SecretsFile> {
  // A writer racing us may not have finished its single write yet: retry briefly on an empty/partial file.
  for (let attempt = 0; ; attempt++) {
    const text = await readFile(file, 'utf8');
    try {
      const parsed = JSON.parse(text) as Partial<SecretsFile>;
      if (typeof parsed.encryptionKeys !== 'string' || typeof parsed.keyPepper !== 'string') {
        throw new SecretsConfigError(`${file} is malformed: expected "encryptionKeys" and "keyPepper" strings`);
      }
      return { version: 1, encryptionKeys: parsed.encryptionKeys, keyPepper: parsed.keyPepper };
    } catch (error) {
      if (error instanceof SecretsConfigError) throw error;
      if (attempt >= 20) throw new SecretsConfigError(`${file} is not valid JSON`);
      await new Promise((resolve) => setTimeout(resolve, 25 + randomBytes(1)[0]!));
    }
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}
