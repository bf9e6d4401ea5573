import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decryptSecret, encryptSecret, Keyring, reencryptSecret, SecretError } from '../../src/secrets/keyring.js';

const ACCOUNT = '6f1c1d52-1111-4a2b-9c3d-000000000001';
const OTHER = '6f1c1d52-1111-4a2b-9c3d-000000000002';

function b64(bytes: number): string {
  return randomBytes(bytes).toString('base64');
}

describe('Keyring.parse', () => {
  it('takes the first entry as current and keeps the rest for decryption', () => {
    const ring = Keyring.parse(`v2:${b64(32)}, v1:${b64(32)}`);
    expect(ring.currentVersion).toBe('v2');
    expect(ring.versions).toEqual(['v2', 'v1']);
    expect(ring.has('v1')).toBe(true);
  });

  const material = b64(32);
  it.each([
    ['empty', '', /empty/],
    ['no version', material, /expected "<version>:<base64 key>"/],
    ['bad version', `v 1:${material}`, /version must be/],
    ['bad base64', 'v1:!!notbase64!!', /not valid base64/],
    ['short key', `v1:${b64(16)}`, /must decode to 32 bytes, got 16/],
    ['long key', `v1:${b64(48)}`, /must decode to 32 bytes, got 48/],
    ['duplicate version', `v1:${material},v1:${b64(32)}`, /duplicate version v1/],
  ])('rejects %s with a message that does not echo key material', (_, spec, message) => {
    let caught: unknown;
    try {
      Keyring.parse(spec);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SecretError);
    const text = (caught as Error).message;
    expect(text).toMatch(message);
    expect(text).toContain('KEYPOOL_ENCRYPTION_KEYS');
    for (const part of spec.split(/[,:]/)) if (part.trim().length >= 8) expect(text).not.toContain(part.trim());
  });
});

describe('AES-256-GCM secrets', () => {
  const ring = Keyring.parse(Keyring.generateSpec('v1'));

  it('round-trips with a fresh IV every time', () => {
    const a = ring.encrypt('sk-live-secret', ACCOUNT);
    const b = encryptSecret(ring, ACCOUNT, 'sk-live-secret');
    expect(a.keyVersion).toBe('v1');
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(Buffer.from(a.ciphertext, 'base64')).toHaveLength(12 + 16 + 'sk-live-secret'.length);
    expect(decryptSecret(ring, ACCOUNT, a)).toBe('sk-live-secret');
    expect(ring.decrypt(b, ACCOUNT)).toBe('sk-live-secret');
  });

  it('fails on an unknown key version', () => {
    const other = Keyring.parse(Keyring.generateSpec('v9'));
    const secret = other.encrypt('sk-x', ACCOUNT);
    expect(() => ring.decrypt(secret, ACCOUNT)).toThrow(expect.objectContaining({ code: 'unknown_version' }));
  });

  it('fails on a ciphertext moved to another account (AAD binds the account id)', () => {
    const secret = ring.encrypt('sk-x', ACCOUNT);
    expect(() => ring.decrypt(secret, OTHER)).toThrow(expect.objectContaining({ code: 'decrypt_failed' }));
  });

  it('fails on a ciphertext relabelled with another version (AAD binds the version)', () => {
    const both = Keyring.parse(`${Keyring.generateSpec('v2')},${Keyring.generateSpec('v1')}`);
    const secret = both.encrypt('sk-x', ACCOUNT);
    expect(() => both.decrypt({ ...secret, keyVersion: 'v1' }, ACCOUNT)).toThrow(SecretError);
  });

  it('fails on tampering anywhere in iv, tag or body, and on truncation', () => {
    const secret = ring.encrypt('sk-tamper-me', ACCOUNT);
    const raw = Buffer.from(secret.ciphertext, 'base64');
    for (const index of [0, 11, 12, 27, 28, raw.length - 1]) {
      const copy = Buffer.from(raw);
      copy[index] = copy[index]! ^ 0x01;
      expect(() => ring.decrypt({ ...secret, ciphertext: copy.toString('base64') }, ACCOUNT)).toThrow(
        expect.objectContaining({ code: 'decrypt_failed' }),
      );
    }
    expect(() => ring.decrypt({ ...secret, ciphertext: raw.subarray(0, 20).toString('base64') }, ACCOUNT)).toThrow(SecretError);
  });

  it('never puts the plaintext in an error message', () => {
    const secret = ring.encrypt('sk-very-secret-value', ACCOUNT);
    try {
      ring.decrypt(secret, OTHER);
    } catch (error) {
      expect((error as Error).message).not.toContain('sk-very-secret-value');
    }
  });

  it('reencrypts to the current version', () => {
    const v1Spec = Keyring.generateSpec('v1');
    const old = Keyring.parse(v1Spec).encrypt('sk-rotate', ACCOUNT);
    const rotated = Keyring.parse(`${Keyring.generateSpec('v2')},${v1Spec}`);
    expect(rotated.isCurrent(old)).toBe(false);
    const next = reencryptSecret(rotated, ACCOUNT, old);
    expect(next.keyVersion).toBe('v2');
    expect(rotated.isCurrent(next)).toBe(true);
    expect(rotated.decrypt(next, ACCOUNT)).toBe('sk-rotate');
  });
});
