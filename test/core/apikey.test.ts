import { describe, expect, it } from 'vitest';
import {
  CLIENT_KEY_PATTERN,
  DEFAULT_KEY_HEADERS,
  createKeyDigester,
  digestKey,
  extractClientKey,
  keyDisplayPrefix,
} from '../../src/core/apikey.js';
import type { HeaderBag } from '../../src/core/types.js';

const KEY = 'kp_0123456789abcdefghijABCDEFGHIJ0123456789';
const OTHER = 'kp_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxw';

describe('extractClientKey', () => {
  const accepted: Array<[string, HeaderBag, string, string[]]> = [
    ['bearer', { authorization: `Bearer ${KEY}` }, KEY, ['authorization']],
    ['bearer scheme is case-insensitive', { authorization: `bEaReR ${KEY}` }, KEY, ['authorization']],
    ['several spaces after the scheme', { authorization: `Bearer   ${KEY}` }, KEY, ['authorization']],
    ['surrounding whitespace trimmed', { authorization: ` Bearer ${KEY}\t` }, KEY, ['authorization']],
    ['x-api-key', { 'x-api-key': KEY }, KEY, ['x-api-key']],
    ['api-key', { 'api-key': KEY }, KEY, ['api-key']],
    ['same key in two headers', { authorization: `Bearer ${KEY}`, 'x-api-key': KEY }, KEY, ['authorization', 'x-api-key']],
    ['same key repeated in one header', { 'x-api-key': [KEY, KEY] }, KEY, ['x-api-key']],
    ['unrelated headers ignored', { 'content-type': 'application/json', 'x-api-key': KEY }, KEY, ['x-api-key']],
    ['any string key is extracted (lookup decides)', { 'x-api-key': 'short' }, 'short', ['x-api-key']],
    ['512-byte key accepted', { 'x-api-key': 'k'.repeat(512) }, 'k'.repeat(512), ['x-api-key']],
  ];
  it.each(accepted)('accepts %s', (_name, headers, key, credentialHeaders) => {
    expect(extractClientKey(headers, DEFAULT_KEY_HEADERS)).toEqual({ ok: true, key, credentialHeaders });
  });

  const refused: Array<[string, HeaderBag, 'missing_api_key' | 'invalid_api_key']> = [
    ['no headers', {}, 'missing_api_key'],
    ['only other headers', { 'x-team-key': KEY }, 'missing_api_key'],
    ['empty array', { 'x-api-key': [] }, 'missing_api_key'],
    ['empty x-api-key', { 'x-api-key': '' }, 'invalid_api_key'],
    ['whitespace-only x-api-key', { 'x-api-key': '   ' }, 'invalid_api_key'],
    ['Bearer alone', { authorization: 'Bearer' }, 'invalid_api_key'],
    ['Bearer and a space', { authorization: 'Bearer ' }, 'invalid_api_key'],
    ['Basic scheme', { authorization: 'Basic dXNlcjpwYXNz' }, 'invalid_api_key'],
    ['bare key in authorization', { authorization: KEY }, 'invalid_api_key'],
    ['two different keys across headers', { authorization: `Bearer ${KEY}`, 'x-api-key': OTHER }, 'invalid_api_key'],
    ['repeated header with different values', { 'x-api-key': [KEY, OTHER] }, 'invalid_api_key'],
    ['key over 512 bytes', { 'x-api-key': 'k'.repeat(513) }, 'invalid_api_key'],
    ['multi-byte key over 512 bytes', { 'x-api-key': 'é'.repeat(257) }, 'invalid_api_key'],
    ['space inside', { authorization: `Bearer ${KEY} extra` }, 'invalid_api_key'],
    ['tab inside', { 'x-api-key': `kp_a\tb` }, 'invalid_api_key'],
    ['NUL inside', { 'x-api-key': `kp_a\u0000b` }, 'invalid_api_key'],
    ['newline inside', { 'x-api-key': `kp_a\nb` }, 'invalid_api_key'],
    ['DEL inside', { 'x-api-key': `kp_a\u007fb` }, 'invalid_api_key'],
    ['non-breaking space inside', { 'x-api-key': `kp_a\u00a0b` }, 'invalid_api_key'],
  ];
  it.each(refused)('refuses %s', (_name, headers, code) => {
    const result = extractClientKey(headers, DEFAULT_KEY_HEADERS);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.code).toBe(code);
      expect(result.message).not.toContain(KEY);
    }
  });

  it("accepts the key where Gemini's SDK sends it (x-goog-api-key is a default header)", () => {
    expect(extractClientKey({ 'x-goog-api-key': KEY }, DEFAULT_KEY_HEADERS)).toEqual({ ok: true, key: KEY, credentialHeaders: ['x-goog-api-key'] });
  });

  it('reports every configured credential header present, even the ones not used', () => {
    const result = extractClientKey({ authorization: `Bearer ${KEY}`, 'api-key': KEY, 'x-api-key': KEY }, DEFAULT_KEY_HEADERS);
    expect(result).toEqual({ ok: true, key: KEY, credentialHeaders: ['authorization', 'x-api-key', 'api-key'] });
  });

  it('honours a custom header list, case-insensitively, and ignores headers outside it', () => {
    expect(extractClientKey({ 'x-team-key': KEY, authorization: 'Basic abc' }, ['X-Team-Key'])).toEqual({
      ok: true,
      key: KEY,
      credentialHeaders: ['x-team-key'],
    });
    expect(extractClientKey({ 'x-api-key': KEY }, ['x-team-key'])).toMatchObject({ ok: false, code: 'missing_api_key' });
  });

  it('never throws on values of the wrong type', () => {
    const weird = { 'x-api-key': 42 } as unknown as HeaderBag;
    expect(extractClientKey(weird, DEFAULT_KEY_HEADERS)).toMatchObject({ ok: false, code: 'invalid_api_key' });
  });
});

describe('digestKey', () => {
  const pepper = new TextEncoder().encode('pepper');
  it('matches the RFC 4231 HMAC-SHA256 test vector (case 2)', () => {
    const jefe = new TextEncoder().encode('Jefe');
    const expected = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843';
    expect(digestKey(jefe, 'what do ya want for nothing?')).toBe(expected);
    expect(createKeyDigester(jefe)('what do ya want for nothing?')).toBe(expected);
  });

  it('depends on the pepper and the key', () => {
    const other = new TextEncoder().encode('other');
    expect(digestKey(pepper, KEY)).not.toBe(digestKey(other, KEY));
    expect(digestKey(pepper, KEY)).not.toBe(digestKey(pepper, OTHER));
    expect(digestKey(pepper, KEY)).toBe(digestKey(pepper, KEY));
  });
});

describe('key shape', () => {
  it.each([
    [KEY, true],
    [`kp_${'a'.repeat(32)}`, true],
    [`kp_${'a'.repeat(31)}`, false],
    [`kp_${'a'.repeat(39)}-`, false],
    [`sk_${'a'.repeat(40)}`, false],
    ['', false],
  ])('CLIENT_KEY_PATTERN %s -> %s', (key, valid) => {
    expect(CLIENT_KEY_PATTERN.test(key)).toBe(valid);
  });

  it.each([
    [KEY, 'kp_01234567'],
    ['kp_abc', 'kp_abc'],
  ])('keyDisplayPrefix(%s) = %s', (key, prefix) => {
    expect(keyDisplayPrefix(key)).toBe(prefix);
  });
});
