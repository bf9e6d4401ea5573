// The request's model (path or JSON body) and the compiled account model matchers: tables, no mocks.
import { describe, expect, it } from 'vitest';
import { compileModelMatcher, MAX_MODEL_BODY_BYTES, MAX_MODEL_CHARS, modelFromBody, modelFromPath, type ModelLookup } from '../../src/core/models.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const model = (name: string): ModelLookup => ({ kind: 'model', model: name });
const invalid = (reason: RegExp) => expect.objectContaining({ kind: 'invalid', reason: expect.stringMatching(reason) });

describe('modelFromPath', () => {
  it.each<[string | undefined, unknown]>([
    // Azure OpenAI: the deployment names the model.
    ['/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21', model('gpt-4o-prod')],
    ['/openai/deployments/my%20dep/embeddings', invalid(/printable characters/)],
    ['/openai/deployments/o1-mini', model('o1-mini')],
    // Behind a gateway route prefix; the query never names the model.
    ['/azure/openai/deployments/gpt-4o-eu/chat/completions?api-version=2024-10-21', model('gpt-4o-eu')],
    ['/v1/chat/completions?x=/openai/deployments/evil/', { kind: 'in_body' }],
    ['/gemini/v1beta/models/gemini-1.5-pro:generateContent', model('gemini-1.5-pro')],
    ['/v1beta/models/gemini-1.5-pro:generateContent?key=/openai/deployments/x/', model('gemini-1.5-pro')],
    ['/openai/deployments/a%2Fb/chat/completions', model('a/b')],
    ['/openai/deployments/%E0%A4%A/chat', invalid(/printable/)],
    // Gemini: /v1beta/models/{model}:method, and Vertex's publisher path.
    ['/v1beta/models/gemini-1.5-pro:generateContent', model('gemini-1.5-pro')],
    ['/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse', model('gemini-2.0-flash')],
    ['/v1beta/models/text-embedding-004:embedContent', model('text-embedding-004')],
    ['/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-1.5-flash:generateContent', model('gemini-1.5-flash')],
    // Everything else: the body says.
    ['/v1/chat/completions', { kind: 'in_body' }],
    ['/v1/messages', { kind: 'in_body' }],
    ['/v1beta/models', { kind: 'in_body' }],
    ['/openai/v1/chat/completions', { kind: 'in_body' }],
    ['', { kind: 'in_body' }],
    [undefined, { kind: 'in_body' }],
  ])('%s -> %j', (path, expected) => {
    expect(modelFromPath(path)).toEqual(expected);
  });
});

describe('modelFromBody', () => {
  it.each<[string, string | undefined, boolean, unknown]>([
    ['OpenAI chat', '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}', false, model('gpt-4o')],
    ['Anthropic messages', '{"max_tokens":10,"model":"claude-3-5-sonnet-20241022","messages":[]}', false, model('claude-3-5-sonnet-20241022')],
    ['OpenRouter slug', '{"model":"meta-llama/llama-3.1-70b-instruct"}', false, model('meta-llama/llama-3.1-70b-instruct')],
    ['Groq', '{"model":"llama-3.3-70b-versatile","stream":true}', false, model('llama-3.3-70b-versatile')],
    ['fine-tune', '{"model":"ft:gpt-4o-mini:acme::abc123"}', false, model('ft:gpt-4o-mini:acme::abc123')],
    ['whitespace and BOM-free', ' \n {"model" : "o1"} \n', false, model('o1')],
    ['nested model only', '{"options":{"model":"gpt-4o"}}', false, invalid(/no "model" string/)],
    ['model not a string', '{"model":42}', false, invalid(/no "model" string/)],
    ['model null', '{"model":null}', false, invalid(/no "model" string/)],
    ['empty model', '{"model":""}', false, invalid(/printable/)],
    ['model with a space', '{"model":"gpt 4o"}', false, invalid(/printable/)],
    ['model with a newline', '{"model":"gpt\\n4o"}', false, invalid(/printable/)],
    ['model too long', JSON.stringify({ model: 'm'.repeat(MAX_MODEL_CHARS + 1) }), false, invalid(/printable/)],
    ['model at the limit', JSON.stringify({ model: 'm'.repeat(MAX_MODEL_CHARS) }), false, model('m'.repeat(MAX_MODEL_CHARS))],
    ['not JSON', 'model=gpt-4o', false, invalid(/not a JSON object/)],
    ['truncated JSON', '{"model":"gpt-4o","messages":[', false, invalid(/not a JSON object/)],
    ['a JSON array', '[{"model":"gpt-4o"}]', false, invalid(/not a JSON object/)],
    ['a JSON string', '"gpt-4o"', false, invalid(/not a JSON object/)],
    ['JSON null', 'null', false, invalid(/not a JSON object/)],
    // The gateway read it and there is none (GET /v1/models): no model, any account may serve it.
    ['empty body', '', false, { kind: 'none' }],
    // Never read (an adapter that could not get it): refused, fail closed.
    ['body not read', undefined, false, invalid(/did not get the request body/)],
    ['the gateway cut it', '{"model":"gpt-4o"}', true, invalid(/larger than/)],
  ])('%s', (_label, text, truncated, expected) => {
    expect(modelFromBody(text === undefined ? undefined : bytes(text), truncated)).toEqual(expected);
  });

  it('refuses a body over MAX_MODEL_BODY_BYTES without parsing it', () => {
    const big = new Uint8Array(MAX_MODEL_BODY_BYTES + 1).fill(0x20);
    expect(modelFromBody(big, false)).toEqual(invalid(/larger than/));
  });

  it('invalid UTF-8 is a value, not a throw', () => {
    expect(modelFromBody(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), false)).toEqual(invalid(/not a JSON object/));
    expect(modelFromBody(new Uint8Array([0x7b, 0x22, 0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), false)).toEqual(invalid(/printable/));
  });
});

describe('compileModelMatcher', () => {
  it.each<[readonly string[], string, boolean]>([
    [[], 'anything', true],
    [['gpt-4o'], 'gpt-4o', true],
    [['gpt-4o'], 'gpt-4o-mini', false],
    [['gpt-4o*'], 'gpt-4o', true],
    [['gpt-4o*'], 'gpt-4o-mini-2024-07-18', true],
    [['gpt-4o*'], 'gpt-4', false],
    [['gpt-4o*'], 'GPT-4o', false],
    [['o1', 'gpt-4o*'], 'o1', true],
    [['o1', 'gpt-4o*'], 'o1-mini', false],
    [['o1*', 'claude-3-5*'], 'claude-3-5-haiku', true],
    [['gpt*'], 'chatgpt-4o', false],
  ])('%j serves %s: %s', (patterns, name, expected) => {
    expect(compileModelMatcher(patterns)(name)).toBe(expected);
  });
});
