// Client (system) API keys: `kp_` + 40 base62 characters (about 238 bits), shown once and stored only as a digest.
import { randomBytes } from 'node:crypto';

export const CLIENT_KEY_PREFIX = 'kp_';
export const CLIENT_KEY_RANDOM_CHARS = 40;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// Largest multiple of 62 that fits in a byte: bytes at or above it are rejected, so `byte % 62` is unbiased.
const REJECT_FROM = 256 - (256 % ALPHABET.length); // 248

/**
 * A new client key. With a prefix (already checked against KEY_PREFIX) the key reads `kp_<prefix>_<random>`: a stable
 * part that priority mappings can match, while the random part keeps its full length.
 */
export function generateClientKey(prefix: string | null = null): string {
  const head = prefix === null ? CLIENT_KEY_PREFIX : `${CLIENT_KEY_PREFIX}${prefix}_`;
  let out = head;
  while (out.length < head.length + CLIENT_KEY_RANDOM_CHARS) {
    for (const byte of randomBytes(64)) {
      if (byte >= REJECT_FROM) continue;
      out += ALPHABET[byte % ALPHABET.length];
      if (out.length === head.length + CLIENT_KEY_RANDOM_CHARS) break;
    }
  }
  return out;
}
