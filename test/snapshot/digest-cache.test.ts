import { describe, expect, it } from 'vitest';
import { digestKey } from '../../src/core/apikey.js';
import { cachedKeyDigester } from '../../src/snapshot/digest-cache.js';

const pepperA = new Uint8Array(32).fill(7);
const pepperB = new Uint8Array(32).fill(9);
const key = `kp_${'x'.repeat(40)}`;

describe('cachedKeyDigester', () => {
  it('gives the HMAC digest, on the first call and on repeats', () => {
    const digester = cachedKeyDigester(pepperA);
    expect(digester(key)).toBe(digestKey(pepperA, key));
    expect(digester(key)).toBe(digestKey(pepperA, key));
  });

  it('keeps peppers apart and is shared by every snapshot of one pepper', () => {
    expect(cachedKeyDigester(pepperB)(key)).toBe(digestKey(pepperB, key));
    expect(cachedKeyDigester(pepperB)(key)).not.toBe(cachedKeyDigester(pepperA)(key));
    expect(cachedKeyDigester(pepperA)).toBe(cachedKeyDigester(pepperA));
  });

  it('stays correct past its bound', () => {
    const digester = cachedKeyDigester(pepperA);
    const keys = Array.from({ length: 10_050 }, (_, i) => `kp_${String(i).padStart(40, '0')}`);
    for (const k of keys) digester(k);
    for (const k of [keys[0]!, keys[5_000]!, keys[10_049]!]) expect(digester(k)).toBe(digestKey(pepperA, k));
  });
});
