import { describe, expect, it } from 'vitest';
import { lastObjectAfterKey, UsageReader, type UsageReaderOptions } from '../../src/core/usage-stream.js';
import { usageFromJsonBody, usageShapeFor, type TokenUsage, type UsageShape } from '../../src/core/usage.js';
import { costUsd, priceFor, type TokenPrice } from '../../src/core/usage-cost.js';

function usage(inputTokens: number, outputTokens: number, cachedInputTokens = 0, cacheCreationInputTokens = 0, estimated = false): TokenUsage {
  return { inputTokens, outputTokens, cachedInputTokens, cacheCreationInputTokens, estimated };
}

/** Feeds `body` to a reader in chunks of `size` characters (or as bytes when `bytes`), returns its answer. */
function read(shape: UsageShape, body: string, size = body.length || 1, options: UsageReaderOptions & { bytes?: boolean } = {}): TokenUsage | null {
  const reader = new UsageReader(shape, options);
  if (options.bytes === true) {
    const bytes = new TextEncoder().encode(body);
    for (let i = 0; i < bytes.length; i += size) reader.push(bytes.subarray(i, i + size));
  } else {
    for (let i = 0; i < body.length; i += size) reader.push(body.slice(i, i + size));
  }
  return reader.finish();
}

function sse(events: readonly unknown[], eol = '\n'): string {
  return events.map((event) => (typeof event === 'string' ? event : `data: ${JSON.stringify(event)}`) + eol + eol).join('');
}

const OPENAI_JSON = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello "usage": {"prompt_tokens": 999}' } }],
  usage: { prompt_tokens: 1200, completion_tokens: 34, total_tokens: 1234, prompt_tokens_details: { cached_tokens: 1024 } },
});
const OPENAI_RESPONSES_JSON = JSON.stringify({
  object: 'response',
  usage: { input_tokens: 50, output_tokens: 7, input_tokens_details: { cached_tokens: 10 }, output_tokens_details: { reasoning_tokens: 3 } },
});
const ANTHROPIC_JSON = JSON.stringify({
  type: 'message',
  content: [{ type: 'text', text: 'Hi' }],
  usage: { input_tokens: 20, output_tokens: 9, cache_read_input_tokens: 100, cache_creation_input_tokens: 30, service_tier: 'standard' },
});
const GEMINI_JSON = JSON.stringify({
  candidates: [{ content: { parts: [{ text: 'Hi' }] } }],
  usageMetadata: { promptTokenCount: 300, candidatesTokenCount: 40, thoughtsTokenCount: 5, cachedContentTokenCount: 200, totalTokenCount: 345 },
});

const openAiChunk = (content: string) => ({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] });
const OPENAI_SSE_WITH_USAGE = sse([
  openAiChunk('Hel'),
  openAiChunk('lo'),
  { object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 11, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 0 } } },
  'data: [DONE]',
]);
// 17 characters of generated text, no usage: ceil(17 / 4) = 5 output tokens, estimated.
const OPENAI_SSE_NO_USAGE = sse([openAiChunk('Hello, '), openAiChunk('world! 12345'), { choices: [{ delta: { tool_calls: [{ function: { arguments: '' } }] } }] }, 'data: [DONE]']);
const OPENAI_RESPONSES_SSE = sse([
  { type: 'response.output_text.delta', delta: 'Hi there' },
  { type: 'response.completed', response: { usage: { input_tokens: 12, output_tokens: 3, input_tokens_details: { cached_tokens: 4 } } } },
]);
const ANTHROPIC_SSE = [
  'event: message_start',
  `data: ${JSON.stringify({ type: 'message_start', message: { usage: { input_tokens: 25, output_tokens: 1, cache_read_input_tokens: 200, cache_creation_input_tokens: 0 } } })}`,
  '',
  'event: content_block_delta',
  `data: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } })}`,
  '',
  'event: ping',
  'data: {"type": "ping"}',
  '',
  'event: message_delta',
  `data: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } })}`,
  '',
  'event: message_stop',
  'data: {"type":"message_stop"}',
  '',
  '',
].join('\n');
// Cut after the first text delta: no message_delta, 21 characters -> 6 tokens estimated (above message_start's 1).
const ANTHROPIC_SSE_CUT = sse([
  { type: 'message_start', message: { usage: { input_tokens: 25, output_tokens: 1 } } },
  { type: 'content_block_delta', delta: { type: 'text_delta', text: 'abcdefghijklmnopqrstu' } },
]);
const GEMINI_SSE = sse([
  { candidates: [{ content: { parts: [{ text: 'Hel' }] } }], usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 1 } },
  { candidates: [{ content: { parts: [{ text: 'lo' }] } }], usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 2, cachedContentTokenCount: 4 } },
]);
const GEMINI_JSON_ARRAY = `[${JSON.stringify({ usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 1 } })},\n${JSON.stringify({ usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 6 } })}]`;

describe('usageShapeFor', () => {
  it.each([
    ['openai', 'openai'],
    ['azure', 'openai'],
    ['none', 'openai'],
    ['anthropic', 'anthropic'],
    ['gemini', 'gemini'],
  ] as const)('%s -> %s', (dialect, shape) => {
    expect(usageShapeFor(dialect)).toBe(shape);
  });
});

describe('usageFromJsonBody', () => {
  it.each<[string, UsageShape, string, TokenUsage | null]>([
    ['OpenAI chat completion (cached is part of input)', 'openai', OPENAI_JSON, usage(1200, 34, 1024)],
    ['OpenAI Responses API', 'openai', OPENAI_RESPONSES_JSON, usage(50, 7, 10)],
    ['Anthropic (cache reads and writes added to input)', 'anthropic', ANTHROPIC_JSON, usage(150, 9, 100, 30)],
    ['Gemini (thinking tokens are output)', 'gemini', GEMINI_JSON, usage(300, 45, 200)],
    ['Gemini JSON array stream: the last usage', 'gemini', GEMINI_JSON_ARRAY, usage(8, 6)],
    ['OpenAI without usage', 'openai', JSON.stringify({ choices: [] }), null],
    ['Anthropic without usage', 'anthropic', JSON.stringify({ type: 'message' }), null],
    ['Gemini without usage', 'gemini', JSON.stringify({ candidates: [] }), null],
    ['an error body', 'openai', JSON.stringify({ error: { message: 'Rate limit', type: 'requests' } }), null],
    ['garbage', 'openai', 'not json {', null],
    ['empty', 'gemini', '', null],
    ['JSON null', 'anthropic', 'null', null],
    ['usage of the wrong types', 'openai', JSON.stringify({ usage: { prompt_tokens: '12', completion_tokens: -1 } }), null],
    ['absurd counts read as absent', 'openai', JSON.stringify({ usage: { prompt_tokens: 1e12, completion_tokens: 3 } }), usage(0, 3)],
    ['fractional counts read as absent', 'gemini', JSON.stringify({ usageMetadata: { promptTokenCount: 1.5, candidatesTokenCount: 2 } }), usage(0, 2)],
    ['cached above input is capped at input', 'openai', JSON.stringify({ usage: { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 9 } } }), usage(5, 1, 5)],
  ])('%s', (_name, shape, body, expected) => {
    expect(usageFromJsonBody(shape, body)).toEqual(expected);
    // The same body through the incremental reader, whole and one character at a time.
    expect(read(shape, body)).toEqual(expected);
    expect(read(shape, body, 1)).toEqual(expected);
  });
});

describe('UsageReader on SSE streams', () => {
  it.each<[string, UsageShape, string, TokenUsage | null]>([
    ['OpenAI final chunk usage (include_usage)', 'openai', OPENAI_SSE_WITH_USAGE, usage(11, 2)],
    ['OpenAI without usage: output estimated from text', 'openai', OPENAI_SSE_NO_USAGE, usage(0, 5, 0, 0, true)],
    ['OpenAI Responses API stream', 'openai', OPENAI_RESPONSES_SSE, usage(12, 3, 4)],
    ['Anthropic message_start + message_delta', 'anthropic', ANTHROPIC_SSE, usage(225, 15, 200, 0)],
    ['Anthropic cut before message_delta: estimated output', 'anthropic', ANTHROPIC_SSE_CUT, usage(25, 6, 0, 0, true)],
    ['Gemini streamed chunks: the last usage', 'gemini', GEMINI_SSE, usage(8, 2, 4)],
    ['only [DONE]', 'openai', 'data: [DONE]\n\n', null],
    ['garbage lines', 'openai', 'hello\nworld\n\n\u0000\u0001 data\n\n', null],
    ['data that is not JSON', 'anthropic', 'data: {oops\n\ndata: 42\n\n', null],
    ['empty body', 'openai', '', null],
    ['a last event without its blank line', 'openai', 'data: {"usage":{"prompt_tokens":3,"completion_tokens":4}}', usage(3, 4)],
    ['comments and other fields ignored', 'openai', ': keep-alive\nid: 7\nretry: 10\nevent: x\ndata:{"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n', usage(1, 1)],
    ['a payload split over two data lines', 'openai', 'data: {"usage":\ndata: {"prompt_tokens":6,"completion_tokens":1}}\n\n', usage(6, 1)],
  ])('%s', (_name, shape, body, expected) => {
    expect(read(shape, body)).toEqual(expected);
  });

  it.each<[string, string]>([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('every split of an Anthropic stream with %s line ends reads the same', (_name, eol) => {
    const body = ANTHROPIC_SSE.split('\n').join(eol);
    for (const size of [1, 2, 3, 7, 64]) {
      expect(read('anthropic', body, size), `chunks of ${size}`).toEqual(usage(225, 15, 200, 0));
      expect(read('anthropic', body, size, { bytes: true }), `byte chunks of ${size}`).toEqual(usage(225, 15, 200, 0));
    }
  });

  it('a CRLF split exactly between CR and LF is one line end, not an empty line that ends the event', () => {
    const reader = new UsageReader('openai');
    reader.push('data: {"usage":\r');
    reader.push('\ndata: {"prompt_tokens":2,"completion_tokens":3}}\r\n\r\n');
    expect(reader.finish()).toEqual(usage(2, 3));
  });

  it('multi-byte characters split across byte chunks are decoded, not mangled', () => {
    const text = 'héllo wörld ✓✓'; // 14 characters -> 4 tokens
    const body = sse([openAiChunk(text)]);
    expect(read('openai', body, 1, { bytes: true })).toEqual(usage(0, 4, 0, 0, true));
  });

  it('an oversized line or event is skipped whole and memory stays bounded; later events still count', () => {
    const huge = `data: {"choices":[{"delta":{"content":"${'x'.repeat(5_000)}"}}]}\n\n`;
    const manyLines = `${'data: aaaa\n'.repeat(2_000)}\n`;
    const body = `${huge}${manyLines}data: {"usage":{"prompt_tokens":9,"completion_tokens":8}}\n\n`;
    for (const size of [1, 100, body.length]) {
      const reader = new UsageReader('openai', { maxEventChars: 1_000 });
      for (let i = 0; i < body.length; i += size) {
        reader.push(body.slice(i, i + size));
        const state = reader as unknown as { line: string; data: string[] };
        expect(state.line.length).toBeLessThanOrEqual(1_000);
        expect(state.data.join('\n').length).toBeLessThanOrEqual(1_000);
      }
      expect(reader.finish()).toEqual(usage(9, 8));
    }
  });

  it('an endless line without a newline never grows the buffer past the bound', () => {
    const reader = new UsageReader('openai', { maxEventChars: 100 });
    for (let i = 0; i < 1_000; i += 1) reader.push('data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');
    expect((reader as unknown as { line: string }).line.length).toBeLessThanOrEqual(100);
    expect(reader.finish()).toBeNull();
  });

  it('the body kind can be forced (a JSON body read as SSE says nothing)', () => {
    expect(read('openai', OPENAI_JSON, 10, { kind: 'sse' })).toBeNull();
    expect(read('openai', `  \n${OPENAI_JSON}`, 10, { kind: 'json' })).toEqual(usage(1200, 34, 1024));
  });
});

describe('UsageReader on oversized JSON bodies', () => {
  const long = (shape: UsageShape, tail: string) => `{"text":"${'y'.repeat(10_000)}", ${tail}}`;
  it.each<[string, UsageShape, string, TokenUsage | null]>([
    ['OpenAI usage in the kept tail', 'openai', long('openai', '"usage":{"prompt_tokens":40,"completion_tokens":2000,"prompt_tokens_details":{"cached_tokens":8}}'), usage(40, 2000, 8)],
    ['Anthropic usage with a string field', 'anthropic', long('anthropic', '"usage":{"input_tokens":4,"service_tier":"st}an{dard","output_tokens":3}'), usage(4, 3)],
    ['Gemini usageMetadata', 'gemini', long('gemini', '"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":6}'), usage(5, 6)],
    ['an escaped key inside a string is not usage', 'openai', long('openai', '"note":"\\"usage\\": {\\"prompt_tokens\\": 1}"'), null],
    ['no usage at all', 'openai', long('openai', '"done":true'), null],
    ['a cut object', 'openai', `{"text":"${'y'.repeat(10_000)}", "usage":{"prompt_tokens":4`, null],
  ])('%s', (_name, shape, body, expected) => {
    expect(read(shape, body, 333, { maxJsonChars: 2_000, tailChars: 500 })).toEqual(expected);
  });

  it('keeps at most maxJsonChars while reading', () => {
    const reader = new UsageReader('openai', { maxJsonChars: 2_000, tailChars: 500 });
    for (let i = 0; i < 100; i += 1) reader.push(`{"a":"${'z'.repeat(300)}"},`);
    expect((reader as unknown as { json: string }).json.length).toBeLessThanOrEqual(2_000);
  });
});

describe('lastObjectAfterKey', () => {
  it.each<[string, string, string | null]>([
    ['{"usage":{"a":1}}', 'usage', '{"a":1}'],
    ['{"usage":{"a":1},"x":{"usage":{"b":{"c":2}}}}', 'usage', '{"b":{"c":2}}'],
    ['{"usage" : { "s": "}" }}', 'usage', '{ "s": "}" }'],
    ['{"usage": 3}', 'usage', null],
    ['', 'usage', null],
  ])('%j', (text, key, expected) => {
    expect(lastObjectAfterKey(text, key)).toBe(expected);
  });
});

describe('UsageReader.model', () => {
  const model = (shape: UsageShape, body: string, options: UsageReaderOptions = {}) => {
    const reader = new UsageReader(shape, options);
    for (let i = 0; i < body.length; i += 7) reader.push(body.slice(i, i + 7));
    reader.finish();
    return reader.model;
  };
  it.each<[string, UsageShape, string, string | null, UsageReaderOptions?]>([
    ['OpenAI JSON', 'openai', JSON.stringify({ model: 'gpt-4o-2024-08-06', usage: {} }), 'gpt-4o-2024-08-06'],
    ['OpenAI SSE chunks', 'openai', sse([{ model: 'gpt-4o-mini', choices: [] }, { model: 'other', choices: [] }]), 'gpt-4o-mini'],
    ['Responses API stream', 'openai', sse([{ type: 'response.created', response: { model: 'o3' } }]), 'o3'],
    ['Anthropic message_start', 'anthropic', ANTHROPIC_SSE.replace('"message":{', '"message":{"model":"claude-sonnet-4",'), 'claude-sonnet-4'],
    ['Gemini modelVersion', 'gemini', JSON.stringify({ modelVersion: 'gemini-2.5-flash', usageMetadata: {} }), 'gemini-2.5-flash'],
    ['a model inside generated text is not the model', 'openai', JSON.stringify({ choices: [{ message: { content: '"model": "fake"' } }] }), null],
    ['an oversized body: the model from its head', 'openai', `{"model":"gpt-x","text":"${'y'.repeat(5_000)}"}`, 'gpt-x', { maxJsonChars: 1_000, tailChars: 100 }],
    ['not a plausible name', 'openai', JSON.stringify({ model: 'has space' }), null],
    ['none', 'openai', OPENAI_SSE_NO_USAGE, null],
  ])('%s', (_name, shape, body, expected, options) => {
    expect(model(shape, body, options)).toBe(expected);
  });
});

describe('priceFor and costUsd', () => {
  const price = (input: number, output: number, cached: number | null = null, creation: number | null = null): TokenPrice => ({
    inputUsdPerMTok: input,
    outputUsdPerMTok: output,
    cachedInputUsdPerMTok: cached,
    cacheCreationUsdPerMTok: creation,
  });
  const table = new Map<string, TokenPrice>([
    ['gpt-4o', price(2.5, 10)],
    ['gpt-4o*', price(2.5, 10, 1.25)],
    ['gpt-4o-mini*', price(0.15, 0.6)],
    ['*', price(1, 1)],
  ]);
  it.each<[string | null, TokenPrice | null]>([
    ['gpt-4o', table.get('gpt-4o')!],
    ['gpt-4o-2024-08-06', table.get('gpt-4o*')!],
    ['gpt-4o-mini-2024-07-18', table.get('gpt-4o-mini*')!],
    ['o3', table.get('*')!],
    [null, table.get('*')!],
  ])('%s', (model, expected) => {
    expect(priceFor(table, model)).toBe(expected);
  });

  it('without prices: null and cost 0', () => {
    expect(priceFor(undefined, 'gpt-4o')).toBeNull();
    expect(priceFor(new Map([['gpt-4o', price(1, 1)]]), 'o3')).toBeNull();
    expect(costUsd(usage(1000, 1000), null)).toBe(0);
  });

  it.each<[TokenUsage, TokenPrice, number]>([
    [usage(1_000_000, 1_000_000), price(2.5, 10), 12.5],
    // 1,200 input of which 1,024 cached at 1.25, 176 plain at 2.5, 34 output at 10.
    [usage(1200, 34, 1024), price(2.5, 10, 1.25), (176 * 2.5 + 1024 * 1.25 + 34 * 10) / 1e6],
    // Cached and cache-written input without their own prices cost the input price.
    [usage(275, 15, 200, 50), price(3, 15), (275 * 3 + 15 * 15) / 1e6],
    [usage(275, 15, 200, 50), price(3, 15, 0.3, 3.75), (25 * 3 + 200 * 0.3 + 50 * 3.75 + 15 * 15) / 1e6],
  ])('cost of %j', (u, p, expected) => {
    expect(costUsd(u, p)).toBeCloseTo(expected, 12);
  });
});

describe('UsageReader on a large embeddings answer', () => {
  it('finds the usage and the model near the end of a body past maxJsonChars', () => {
    const data = Array.from({ length: 200 }, (_, i) => ({ object: 'embedding', index: i, embedding: Array.from({ length: 50 }, () => 0.0123456) }));
    const body = JSON.stringify({ object: 'list', data, model: 'text-embedding-3-small', usage: { prompt_tokens: 321, total_tokens: 321 } });
    expect(body.length).toBeGreaterThan(100_000);
    const reader = new UsageReader('openai', { maxJsonChars: 20_000, tailChars: 2_000 });
    for (let i = 0; i < body.length; i += 1_000) reader.push(body.slice(i, i + 1_000));
    expect(reader.finish()).toEqual(usage(321, 0));
    expect(reader.model).toBe('text-embedding-3-small');
    // Under the bound, parsed whole: the same answer.
    const whole = new UsageReader('openai', { maxJsonChars: 1_000_000 });
    whole.push(body);
    expect(whole.finish()).toEqual(usage(321, 0));
    expect(whole.model).toBe('text-embedding-3-small');
  });
});
