// Encryption of upstream provider keys at rest: AES-256-GCM under a versioned key ring.
//
// KEYPOOL_ENCRYPTION_KEYS="v2:<base64 of 32 bytes>,v1:<base64 of 32 bytes>": the first entry is the current key
// (new and re-encrypted secrets use it); older entries only decrypt, so keys can be rotated without downtime and
// `keypool crypto reencrypt` moves every account to the current version before an old key is dropped.
// Stored value: base64(iv[12] | tag[16] | ciphertext) plus the version in its own column. The AAD binds a
// ciphertext to its account and version ("<accountId>:<version>"), so a ciphertext copied onto another account
// row, or relabelled with another version, fails to decrypt instead of silently serving the wrong credential.
// Errors name the entry (position and version) but never echo key material or plaintext.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;

/** A secret as the database stores it. */
export interface EncryptedSecret {
  /** base64(iv | tag | ciphertext). */
  readonly ciphertext: string;
  /** Version of the ring key that encrypted it. */
  readonly keyVersion: string;
}

export type SecretErrorCode = 'bad_ring' | 'unknown_version' | 'decrypt_failed';

/** A key ring that cannot be built, or a secret that cannot be decrypted. The message never holds secrets. */
export class SecretError extends Error {
  constructor(
    readonly code: SecretErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SecretError';
  }
}

export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>;
  /** Version new ciphertexts are written with (the ring's first entry). */
  readonly currentVersion: string;

  private constructor(entries: ReadonlyArray<readonly [string, Buffer]>) {
    this.#keys = new Map(entries);
    this.currentVersion = entries[0]![0];
  }

  /** Parses `v2:<base64>,v1:<base64>`; `variable` names the source in error messages. */
  static parse(spec: string, variable = 'KEYPOOL_ENCRYPTION_KEYS'): Keyring {
    const parts = spec
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part.length > 0);
    if (parts.length === 0) throw new SecretError('bad_ring', `${variable} is empty: expected "v1:<base64 of 32 bytes>"`);
    const entries: Array<[string, Buffer]> = [];
    parts.forEach((part, index) => {
      const where = `${variable} entry ${index + 1}`;
      const colon = part.indexOf(':');
      if (colon <= 0) throw new SecretError('bad_ring', `${where}: expected "<version>:<base64 key>"`);
      const version = part.slice(0, colon);
      const encoded = part.slice(colon + 1).trim();
      if (!VERSION_PATTERN.test(version)) {
        throw new SecretError('bad_ring', `${where}: version must be 1-32 characters of [A-Za-z0-9._-] (e.g. v1)`);
      }
      if (entries.some(([existing]) => existing === version)) {
        throw new SecretError('bad_ring', `${where}: duplicate version ${version}`);
      }
      if (!BASE64_PATTERN.test(encoded)) throw new SecretError('bad_ring', `${where} (${version}): key is not valid base64`);
      const key = Buffer.from(encoded, 'base64');
      if (key.length !== KEY_BYTES) {
        throw new SecretError('bad_ring', `${where} (${version}): key must decode to ${KEY_BYTES} bytes, got ${key.length}`);
      }
      entries.push([version, key]);
    });
    return new Keyring(entries);
  }

  /** Builds a ring from raw keys (first = current); used by tests and the embedded bootstrap. */
  static fromKeys(keys: ReadonlyArray<{ readonly version: string; readonly key: Uint8Array }>): Keyring {
    return Keyring.parse(keys.map(({ version, key }) => `${version}:${Buffer.from(key).toString('base64')}`).join(','), 'key ring');
  }

  /** A fresh random ring spec with one version, `v1:<base64>` (embedded bootstrap, tests). */
  static generateSpec(version = 'v1'): string {
    return `${version}:${randomBytes(KEY_BYTES).toString('base64')}`;
  }

  /** Every version this ring can decrypt, current first. */
  get versions(): readonly string[] {
    return [...this.#keys.keys()];
  }

  has(version: string): boolean {
    return this.#keys.has(version);
  }

  /** Encrypts with the current key, bound to the account id. */
  encrypt(plaintext: string, accountId: string): EncryptedSecret {
    const version = this.currentVersion;
    const key = this.#keys.get(version)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(accountId, version));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'), keyVersion: version };
  }

  /** Decrypts; throws SecretError (unknown_version / decrypt_failed) on a missing key, tampering or a wrong account. */
  decrypt(secret: EncryptedSecret, accountId: string): string {
    const key = this.#keys.get(secret.keyVersion);
    if (!key) {
      throw new SecretError('unknown_version', `no key for version ${secret.keyVersion} in the key ring (have ${this.versions.join(', ')})`);
    }
    const raw = Buffer.from(secret.ciphertext, 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretError('decrypt_failed', 'ciphertext is truncated');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(accountId, secret.keyVersion));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretError('decrypt_failed', `secret of account ${accountId} failed authentication (wrong key, account or tampered data)`);
    }
  }

  /** True when the secret is already under the current version. */
  isCurrent(secret: EncryptedSecret): boolean {
    return secret.keyVersion === this.currentVersion;
  }

  /** Decrypts with its version and encrypts again under the current one (a fresh IV even if already current). */
  reencrypt(secret: EncryptedSecret, accountId: string): EncryptedSecret {
    return this.encrypt(this.decrypt(secret, accountId), accountId);
  }
}

function aad(accountId: string, version: string): Buffer {
  return Buffer.from(`${accountId}:${version}`, 'utf8');
}

/** Function forms of the Keyring methods. */
export function encryptSecret(ring: Keyring, accountId: string, plaintext: string): EncryptedSecret {
  return ring.encrypt(plaintext, accountId);
}

export function decryptSecret(ring: Keyring, accountId: string, secret: EncryptedSecret): string {
  return ring.decrypt(secret, accountId);
}

export function reencryptSecret(ring: Keyring, accountId: string, secret: EncryptedSecret): EncryptedSecret {
  return ring.reencrypt(secret, accountId);
}
