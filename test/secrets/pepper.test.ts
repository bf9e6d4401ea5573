import { describe, expect, it } from 'vitest';
import { generatePepperSpec, parsePepper, PepperError } from '../../src/secrets/pepper.js';

describe('parsePepper', () => {
  it('accepts base64:, hex: and raw forms of at least 32 bytes', () => {
    expect(parsePepper(`base64:${Buffer.alloc(32, 7).toString('base64')}`)).toEqual(new Uint8Array(Buffer.alloc(32, 7)));
    expect(parsePepper(`hex:${'ab'.repeat(32)}`)).toHaveLength(32);
    expect(parsePepper('x'.repeat(40))).toHaveLength(40);
    expect(parsePepper(generatePepperSpec())).toHaveLength(32);
  });

  it.each([
    ['short raw', 'short-pepper-value'],
    ['short base64', `base64:${Buffer.alloc(16, 1).toString('base64')}`],
    ['bad base64', 'base64:@@@@secretish@@@@'],
    ['bad hex', 'hex:zzzzsecretish'],
  ])('rejects %s without echoing it', (_, value) => {
    let caught: unknown;
    try {
      parsePepper(value);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PepperError);
    expect((caught as Error).message).toContain('KEYPOOL_KEY_PEPPER');
    expect((caught as Error).message).not.toContain(value.replace(/^(base64|hex):/, ''));
  });
});
