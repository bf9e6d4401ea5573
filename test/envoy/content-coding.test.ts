// Compressed provider error bodies: decoded (gzip, x-gzip, deflate zlib and raw, br), bounded, cut bodies read as far as
// they go, anything unreadable is no body (the status alone decides); and the classifier's verdict on the result.
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { contentCodingOf, MAX_DECODED_ERROR_BODY_BYTES, readableErrorBody } from '../../src/adapters/envoy/content-coding.js';
import { classifyProviderError, MAX_ERROR_BODY_BYTES } from '../../src/core/provider-errors.js';

const QUOTA = JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } });
const text = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : Buffer.from(bytes).toString());
const encoded = (encoding: string) => ({ 'content-type': 'application/json', 'content-encoding': encoding });

describe('contentCodingOf', () => {
  it.each([
    [undefined, 'identity'],
    ['', 'identity'],
    ['identity', 'identity'],
    ['gzip', 'gzip'],
    [' X-GZIP ', 'gzip'],
    ['deflate', 'deflate'],
    ['Br', 'br'],
    ['zstd', null],
    ['gzip, br', null],
  ] as const)('%j -> %s', (value, coding) => {
    expect(contentCodingOf(value === undefined ? {} : { 'content-encoding': value })).toBe(coding);
  });
  it('several Content-Encoding headers (stacked codings) are not read', () => {
    expect(contentCodingOf({ 'content-encoding': ['gzip', 'br'] })).toBeNull();
  });
});

describe('readableErrorBody', () => {
  it.each([
    ['gzip', gzipSync],
    ['x-gzip', gzipSync],
    ['deflate', deflateSync],
    ['deflate', deflateRawSync],
    ['br', brotliCompressSync],
  ] as const)('%s (%o): decoded, and the 429 classifies as quota_exhausted', (encoding, compress) => {
    const body = readableErrorBody(compress(QUOTA), encoded(encoding));
    expect(text(body)).toBe(QUOTA);
    expect(classifyProviderError(429, body)).toBe('quota_exhausted');
  });

  it('identity or no Content-Encoding: the bytes as they came', () => {
    const raw = Buffer.from(QUOTA);
    expect(readableErrorBody(raw, {})).toBe(raw);
    expect(text(readableErrorBody(raw, encoded('identity')))).toBe(QUOTA);
  });

  it('no body stays no body; an empty compressed body is no body', () => {
    expect(readableErrorBody(undefined, encoded('gzip'))).toBeUndefined();
    expect(readableErrorBody(new Uint8Array(0), encoded('gzip'))).toBeUndefined();
    expect(readableErrorBody(new Uint8Array(0), {})).toHaveLength(0);
  });

  it('an unknown coding is no body, even when the bytes are plain JSON (they cannot be trusted to be)', () => {
    expect(readableErrorBody(Buffer.from(QUOTA), encoded('zstd'))).toBeUndefined();
    expect(readableErrorBody(gzipSync(QUOTA), encoded('gzip, br'))).toBeUndefined();
  });

  it.each(['gzip', 'deflate', 'br'])('%s that is not: no body, never a throw', (encoding) => {
    const garbage = Buffer.from('not compressed at all, just some bytes that claim to be');
    expect(() => readableErrorBody(garbage, encoded(encoding))).not.toThrow();
    expect(readableErrorBody(garbage, encoded(encoding))).toBeUndefined();
  });

  it('a gzip body cut in its trailer (BUFFERED_PARTIAL at the buffer limit) still decodes whole and classifies', () => {
    const gz = gzipSync(QUOTA);
    const cut = gz.subarray(0, gz.length - 8); // CRC-32 and length gone
    expect(text(readableErrorBody(cut, encoded('gzip')))).toBe(QUOTA);
    expect(classifyProviderError(429, readableErrorBody(cut, encoded('gzip')))).toBe('quota_exhausted');
  });

  it.each([
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
  ] as const)('%s cut mid-stream: what it holds, a prefix of the body, no throw; the verdict falls back to the status', (encoding, compress) => {
    const whole = compress(QUOTA);
    const prefix = text(readableErrorBody(whole.subarray(0, Math.floor(whole.length / 2)), encoded(encoding))) ?? '';
    expect(QUOTA.startsWith(prefix)).toBe(true);
    expect(prefix.length).toBeLessThan(QUOTA.length);
    expect(classifyProviderError(429, Buffer.from(prefix))).toBe('unknown');
  });

  it('bounded: a body decoding to exactly the bound is read; one byte more (a bomb, or just long) is no body', () => {
    expect(MAX_DECODED_ERROR_BODY_BYTES).toBe(MAX_ERROR_BODY_BYTES);
    const atBound = Buffer.alloc(MAX_DECODED_ERROR_BODY_BYTES, 'x');
    expect(readableErrorBody(gzipSync(atBound), encoded('gzip'))).toHaveLength(MAX_DECODED_ERROR_BODY_BYTES);
    const bomb = Buffer.alloc(8 * 1024 * 1024, 0); // 8 MiB of zeros: about 8 KiB of gzip, well within the raw bytes read
    for (const [encoding, compressed] of [
      ['gzip', gzipSync(Buffer.alloc(MAX_DECODED_ERROR_BODY_BYTES + 1, 'x'))],
      ['gzip', gzipSync(bomb)],
      ['deflate', deflateSync(bomb)],
      ['br', brotliCompressSync(bomb)],
    ] as const) {
      expect(readableErrorBody(compressed, encoded(encoding)), encoding).toBeUndefined();
    }
  });

  it('reads at most MAX_ERROR_BODY_BYTES of the raw bytes (identity), as the classifier does', () => {
    const long = Buffer.alloc(MAX_ERROR_BODY_BYTES * 2, 'x');
    expect(readableErrorBody(long, {})).toHaveLength(MAX_ERROR_BODY_BYTES);
  });
});
