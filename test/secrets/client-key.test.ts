import { describe, expect, it } from 'vitest';
import { CLIENT_KEY_PATTERN } from '../../src/core/apikey.js';
import { generateClientKey } from '../../src/secrets/client-key.js';

describe('generateClientKey', () => {
  it('is kp_ + 40 base62 characters and matches the core pattern', () => {
    const key = generateClientKey();
    expect(key).toMatch(/^kp_[0-9A-Za-z]{40}$/);
    expect(key).toMatch(CLIENT_KEY_PATTERN);
  });

  it('does not repeat and uses the alphabet evenly (no modulo bias)', () => {
    const keys = Array.from({ length: 2_000 }, generateClientKey);
    expect(new Set(keys).size).toBe(keys.length);
    const counts = new Map<string, number>();
    for (const key of keys) for (const char of key.slice(3)) counts.set(char, (counts.get(char) ?? 0) + 1);
    expect(counts.size).toBe(62);
    // 80,000 characters over 62 symbols: ~1290 each. With modulo bias the first 8 symbols would get ~25% more.
    const expected = (keys.length * 40) / 62;
    let chiSquare = 0;
    for (const count of counts.values()) chiSquare += (count - expected) ** 2 / expected;
    // 61 degrees of freedom: p = 0.0001 at about 114.
    expect(chiSquare).toBeLessThan(114);
  });
});
