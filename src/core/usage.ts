// Token usage as providers report it in response bodies, read into one normalised shape. Pure: values in, values out;
// garbage reads as "no usage", never as an exception.
//
// Normalisation (one meaning per field, whatever the provider):
//   inputTokens              every prompt token the provider processed, cached reads and cache writes included.
//                            OpenAI `prompt_tokens` / `input_tokens` and Gemini `promptTokenCount` already include
//                            the cached part; Anthropic's `input_tokens` excludes it, so Anthropic's figure is
//                            input_tokens + cache_read_input_tokens + cache_creation_input_tokens.
//   outputTokens             generated tokens, reasoning included (OpenAI `completion_tokens` / `output_tokens`,
//                            Anthropic `output_tokens`, Gemini `candidatesTokenCount + thoughtsTokenCount`).
//   cachedInputTokens        the part of inputTokens read from the provider's prompt cache.
//   cacheCreationInputTokens the part of inputTokens written to the cache (Anthropic only).
//   estimated                true when the provider reported nothing and the figure is guessed from streamed text.
import type { HeaderBag, RateLimitDialect } from './types.js';

export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedInputTokens: number;
  readonly cacheCreationInputTokens: number;
  readonly estimated: boolean;
}

/** How a provider's body reports usage; Azure, Groq and OpenRouter speak OpenAI's. */
export type UsageShape = 'openai' | 'anthropic' | 'gemini';

/** Characters per token for estimates from streamed text (the usual rule of thumb for English text and code). */
export const CHARS_PER_TOKEN = 4;
/** Largest token count believed from one response; anything above is garbage (or hostile) and reads as absent. */
export const MAX_TOKENS_PER_RESPONSE = 100_000_000;

export function usageShapeFor(dialect: RateLimitDialect): UsageShape {
  switch (dialect) {
    case 'anthropic':
      return 'anthropic';
    case 'gemini':
      return 'gemini';
    case 'openai':
    case 'azure':
    case 'none':
      return 'openai';
  }
}

/**
 * May the response to this request report tokens it cost? Only a POST creates what providers bill (a completion, a
 * response, an embedding). A GET of a stored one (OpenAI `GET /v1/responses/{id}`, `GET /v1/chat/completions/{id}`)
 * carries the `usage` of the request that created it: counting it again would bill twice and charge the key's
 * token windows for nothing. `:method` is the HTTP/2 pseudo-header Envoy passes to ext_proc; a gateway that passes
 * no method (Kong's request headers) may.
 */
export function requestMayReportUsage(headers: HeaderBag): boolean {
  const method = headers[':method'];
  return method === undefined || method === 'POST';
}

/** Output tokens estimated from a count of generated characters. */
export function estimateTokensFromChars(chars: number): number {
  return chars <= 0 ? 0 : Math.ceil(chars / CHARS_PER_TOKEN);
}

/**
 * Usage from a complete (non-streamed) JSON response body of the given shape; null when the body is not JSON or says
 * nothing about usage. A JSON array (Gemini's streamGenerateContent without `alt=sse`) reads as its last usage.
 */
export function usageFromJsonBody(shape: UsageShape, body: string): TokenUsage | null {
  return readJsonBody(shape, body).usage;
}

/** usageFromJsonBody and the model the body names (the first one, for an array), from one parse. */
export function readJsonBody(shape: UsageShape, body: string): { readonly usage: TokenUsage | null; readonly model: string | null } {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { usage: null, model: null };
  }
  if (Array.isArray(value)) {
    let usage: TokenUsage | null = null;
    let model: string | null = null;
    for (const item of value) {
      usage = usageFromMessage(shape, item) ?? usage;
      model ??= modelOf(item);
    }
    return { usage, model };
  }
  return { usage: usageFromMessage(shape, value), model: modelOf(value) };
}

/**
 * Usage carried by one parsed message: a whole JSON response, or one streamed event's payload when the shape reports
 * usage once (OpenAI's final chunk, Gemini's chunks). Anthropic's streamed events go through AnthropicStreamUsage.
 */
export function usageFromMessage(shape: UsageShape, message: unknown): TokenUsage | null {
  if (!isRecord(message)) return null;
  switch (shape) {
    case 'openai':
      // Chat Completions puts `usage` at the top; the Responses API's final event nests it in `response`.
      return openAiUsage(message.usage) ?? (isRecord(message.response) ? openAiUsage(message.response.usage) : null);
    case 'anthropic':
      return anthropicUsage(message.usage, null);
    case 'gemini':
      return geminiUsage(message.usageMetadata);
  }
}

/** OpenAI Chat Completions (`prompt_tokens`) or Responses (`input_tokens`) usage; cached tokens are a detail of input. */
export function openAiUsage(usage: unknown): TokenUsage | null {
  if (!isRecord(usage)) return null;
  const input = count(usage.prompt_tokens) ?? count(usage.input_tokens);
  const output = count(usage.completion_tokens) ?? count(usage.output_tokens);
  if (input === null && output === null) return null;
  const details = isRecord(usage.prompt_tokens_details) ? usage.prompt_tokens_details : usage.input_tokens_details;
  const cached = isRecord(details) ? (count(details.cached_tokens) ?? 0) : 0;
  const inputTokens = input ?? 0;
  return { inputTokens, outputTokens: output ?? 0, cachedInputTokens: Math.min(cached, inputTokens), cacheCreationInputTokens: 0, estimated: false };
}

/**
 * Anthropic usage. `previous` is what earlier events of the same stream said: `message_delta` carries cumulative
 * counts and may omit the input side, which then keeps message_start's figures.
 */
export function anthropicUsage(usage: unknown, previous: TokenUsage | null): TokenUsage | null {
  if (!isRecord(usage)) return null;
  const plain = count(usage.input_tokens);
  const cacheRead = count(usage.cache_read_input_tokens);
  const cacheWrite = count(usage.cache_creation_input_tokens);
  const output = count(usage.output_tokens);
  if (plain === null && cacheRead === null && cacheWrite === null && output === null) return null;
  const cachedInputTokens = cacheRead ?? previous?.cachedInputTokens ?? 0;
  const cacheCreationInputTokens = cacheWrite ?? previous?.cacheCreationInputTokens ?? 0;
  const plainInput = plain ?? (previous ? previous.inputTokens - previous.cachedInputTokens - previous.cacheCreationInputTokens : 0);
  return {
    inputTokens: plainInput + cachedInputTokens + cacheCreationInputTokens,
    outputTokens: output ?? previous?.outputTokens ?? 0,
    cachedInputTokens,
    cacheCreationInputTokens,
    estimated: false,
  };
}

/** Gemini `usageMetadata`; thinking tokens are billed as output, so they count as output. */
export function geminiUsage(metadata: unknown): TokenUsage | null {
  if (!isRecord(metadata)) return null;
  const input = count(metadata.promptTokenCount);
  const candidates = count(metadata.candidatesTokenCount);
  const thoughts = count(metadata.thoughtsTokenCount);
  if (input === null && candidates === null) return null;
  const inputTokens = input ?? 0;
  const cached = count(metadata.cachedContentTokenCount) ?? 0;
  return {
    inputTokens,
    outputTokens: (candidates ?? 0) + (thoughts ?? 0),
    cachedInputTokens: Math.min(cached, inputTokens),
    cacheCreationInputTokens: 0,
    estimated: false,
  };
}

/** A model name as a provider reports it: printable ASCII without spaces or quotes, at most 200 characters. */
const MODEL_NAME = /^[\x21\x23-\x7e]{1,200}$/;

/**
 * The model a parsed message names (OpenAI `model`, the Responses API's `response.model`, Anthropic's `model` or
 * `message.model` in message_start, Gemini's `modelVersion`); null when absent or not a plausible name.
 */
export function modelOf(message: unknown): string | null {
  if (!isRecord(message)) return null;
  const nested = isRecord(message.response) ? message.response.model : isRecord(message.message) ? message.message.model : undefined;
  for (const value of [message.model, message.modelVersion, nested]) {
    if (typeof value === 'string' && MODEL_NAME.test(value)) return value;
  }
  return null;
}

/** The first model named in a JSON text's head (for bodies too large to parse whole), or null. */
export function modelInText(text: string): string | null {
  const match = /"(?:model|modelVersion)"\s*:\s*"([^"\\]{1,200})"/.exec(text);
  return match !== null && MODEL_NAME.test(match[1]!) ? match[1]! : null;
}

/** Characters of generated text one streamed payload carries, for the estimate when no usage is ever reported. */
export function generatedChars(shape: UsageShape, message: unknown): number {
  if (!isRecord(message)) return 0;
  switch (shape) {
    case 'openai':
      return openAiChars(message);
    case 'anthropic':
      return anthropicChars(message);
    case 'gemini':
      return geminiChars(message);
  }
}

function openAiChars(message: Record<string, unknown>): number {
  // Responses API: `response.output_text.delta` / function-call argument deltas carry text in `delta`.
  if (typeof message.delta === 'string') return message.delta.length;
  if (!Array.isArray(message.choices)) return 0;
  let chars = 0;
  for (const choice of message.choices) {
    if (!isRecord(choice) || !isRecord(choice.delta)) continue;
    const delta = choice.delta;
    chars += textLength(delta.content) + textLength(delta.reasoning_content) + textLength(delta.reasoning);
    if (!Array.isArray(delta.tool_calls)) continue;
    for (const call of delta.tool_calls) {
      if (isRecord(call) && isRecord(call.function)) chars += textLength(call.function.arguments);
    }
  }
  return chars;
}

function anthropicChars(message: Record<string, unknown>): number {
  if (message.type !== 'content_block_delta' || !isRecord(message.delta)) return 0;
  const delta = message.delta;
  return textLength(delta.text) + textLength(delta.partial_json) + textLength(delta.thinking);
}

function geminiChars(message: Record<string, unknown>): number {
  if (!Array.isArray(message.candidates)) return 0;
  let chars = 0;
  for (const candidate of message.candidates) {
    if (!isRecord(candidate) || !isRecord(candidate.content) || !Array.isArray(candidate.content.parts)) continue;
    for (const part of candidate.content.parts) if (isRecord(part)) chars += textLength(part.text);
  }
  return chars;
}

function textLength(value: unknown): number {
  return typeof value === 'string' ? value.length : 0;
}

/** A token count: a non-negative integer not above MAX_TOKENS_PER_RESPONSE, else null (absent or garbage). */
function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TOKENS_PER_RESPONSE ? value : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
