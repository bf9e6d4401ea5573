// The HMAC of a presented client key is the largest single cost of a decision (~1.5 µs). Callers present the same
// key request after request, so recent digests are remembered: a repeat costs a map lookup (~40 ns). Bounded in
// entries and age. It holds the presented keys themselves as map keys: the process sees them on every request
// anyway, and the upstream secrets it holds decrypted are more sensitive still; entries age out after a minute.
import { LRUCache } from 'lru-cache';
import { createKeyDigester } from '../core/apikey.js';

/** Most presented keys remembered (~100 bytes each). A flood of random keys only evicts; it never grows past this. */
const MAX_REMEMBERED_KEYS = 10_000;
/** How long a digest is remembered after it was computed. */
const REMEMBERED_DIGEST_TTL_MS = 60_000;

const digestersByPepper = new WeakMap<Uint8Array, (key: string) => string>();

/** A digest function for `pepper` that remembers recent results; one per pepper, shared by successive snapshots. */
export function cachedKeyDigester(pepper: Uint8Array): (key: string) => string {
  let digester = digestersByPepper.get(pepper);
  if (digester === undefined) {
    const digest = createKeyDigester(pepper);
    const remembered = new LRUCache<string, string>({ max: MAX_REMEMBERED_KEYS, ttl: REMEMBERED_DIGEST_TTL_MS, ttlResolution: 1_000 });
    digester = (key: string): string => {
      let value = remembered.get(key);
      if (value === undefined) {
        value = digest(key);
        remembered.set(key, value);
      }
      return value;
    };
    digestersByPepper.set(pepper, digester);
  }
  return digester;
}
