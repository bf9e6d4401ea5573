import { describe, expect, it } from 'vitest';
import { declaredBodyBytes, DEFAULT_OUTPUT_TOKENS, estimateRequestTokens, MAX_OUTPUT_TOKENS, outputCapOf } from '../../src/core/token-estimate.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('estimateRequestTokens', () => {
  const chat = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":100}'; // 80 bytes
  // [name, body, default output, expected]
  const cases: ReadonlyArray<[string, Uint8Array | string | null | undefined, number, number]> = [
    ['no body: the default output only', null, 1000, 1000],
    ['absent body', undefined, 500, 500],
    ['empty body', '', 500, 500],
    ['no body and no default: at least 1', null, 0, 1],
    ['OpenAI chat max_tokens: bytes/4 + the cap', chat, 1000, 20 + 100],
    ['the same body as bytes', bytes(chat), 1000, 20 + 100],
    ['no cap in the body: bytes/4 + the default', '{"model":"m","input":"abcd"}', 1000, 7 + 1000],
    ['max_completion_tokens', '{"max_completion_tokens":50}', 1000, 7 + 50],
    ['Responses API max_output_tokens', '{"max_output_tokens": 64}', 1000, 7 + 64],
    ['Gemini generationConfig.maxOutputTokens', '{"generationConfig":{"maxOutputTokens":256}}', 1000, 11 + 256],
    ['several caps: the largest (conservative)', '{"max_tokens":10,"max_completion_tokens":30}', 1000, 11 + 30],
    ['a cap quoted inside a string value does not count', '{"input":"\\"max_tokens\\": 5"}', 100, 8 + 100],
    ['an object under the name (a tool schema) is no cap', '{"max_tokens":{"type":"integer"}}', 100, 9 + 100],
    ['multi-byte text counts its UTF-8 bytes (8 + 9 bytes)', '{"c":"日本語"}', 0, 5],
    ['a huge cap is bounded', '{"max_tokens":999999999999}', 0, 7 + MAX_OUTPUT_TOKENS],
  ];
  it.each(cases)('%s', (_name, body, defaultOutput, expected) => {
    expect(estimateRequestTokens(body, defaultOutput)).toBe(expected);
  });

  // [name, body, declared bytes (content-length), expected]
  const declared: ReadonlyArray<[string, string | null, number | null, number]> = [
    ['no body passed, 4000 bytes declared: the declared input + the default output', null, 4000, 1000 + 100],
    ['a cut body (1 kB of a declared 8 kB) counts the declared size, and its own cap', '{"max_tokens":7,"x":"' + 'a'.repeat(990), 8000, 2000 + 7],
    ['a declared size smaller than the body passed does not lower it', '{"max_tokens":7}', 1, 4 + 7],
    ['nothing declared', '{"max_tokens":7}', null, 4 + 7],
  ];
  it.each(declared)('%s', (_name, body, declaredBytes, expected) => {
    expect(estimateRequestTokens(body, 100, declaredBytes)).toBe(expected);
  });

  it('reads content-length only as a plain integer, once', () => {
    expect([declaredBodyBytes('1234'), declaredBodyBytes(undefined), declaredBodyBytes('-1'), declaredBodyBytes('1e3'), declaredBodyBytes(['1', '2'])]).toEqual([
      1234,
      null,
      null,
      null,
      null,
    ]);
  });

  it('string and bytes agree on multi-byte text (surrogate pairs included)', () => {
    const text = '{"c":"😀é中"}';
    expect(estimateRequestTokens(text, 0)).toBe(estimateRequestTokens(bytes(text), 0));
  });

  it('has a sane default output', () => {
    expect(DEFAULT_OUTPUT_TOKENS).toBeGreaterThan(0);
    expect(outputCapOf('{}')).toBeNull();
  });
});
