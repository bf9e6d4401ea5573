// Provider response bodies that report token usage, and the usage keypool must record for them (src/core/usage.ts
// normalises), shared by the real-Envoy usage tests (test/envoy/usage-real.test.ts, usage-failover-real.test.ts).
import type { TokenUsage } from '../../src/core/usage.js';
import type { Reply } from '../envoy/mock-upstream.js';

export const usage = (inputTokens: number, outputTokens: number, cachedInputTokens = 0, cacheCreationInputTokens = 0, estimated = false): TokenUsage => ({
  inputTokens,
  outputTokens,
  cachedInputTokens,
  cacheCreationInputTokens,
  estimated,
});

export const sse = (events: readonly unknown[]) => events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join('');
export const chunk = (content: string) => ({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] });
export const OPENAI_JSON = JSON.stringify({
  object: 'chat.completion',
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' } }],
  usage: { prompt_tokens: 1200, completion_tokens: 34, total_tokens: 1234, prompt_tokens_details: { cached_tokens: 1024 } },
});
/** OPENAI_JSON's figures as recorded. */
export const OPENAI_JSON_USAGE = usage(1200, 34, 1024);
// 40 chunks, then the include_usage chunk: the figures are the provider's, not a count of the chunks.
export const OPENAI_SSE = sse([
  ...Array.from({ length: 40 }, (_, i) => chunk(`word${i} `)),
  { object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 57, completion_tokens: 81, prompt_tokens_details: { cached_tokens: 0 } } },
  '[DONE]',
]);
/** OPENAI_SSE's figures as recorded. */
export const OPENAI_SSE_USAGE = usage(57, 81);

export const json = (body: string | Buffer, extra: Record<string, string> = {}): Reply => ({ status: 200, headers: { 'content-type': 'application/json', ...extra }, body });
export const stream = (body: string): Reply => ({ status: 200, headers: { 'content-type': 'text/event-stream' }, body });
