// The usage observer's stream (src/adapters/envoy/usage-observer.ts) driven with the messages Envoy sends, over real
// gRPC to keypool's ext_proc server: the deciding stream hands its ticket over by x-request-id, the observer reads the
// streamed body and records the usage once; it never answers in observability mode, answers CONTINUE otherwise.
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';
import { ExtProcClient, requestHeadersMsg, responseHeadersMsg, waitFor, type Msg, type ProcessCall } from './ext-proc-client.js';

let engine: TestEngine;
let server: ExtProcServer;
let client: ExtProcClient;
let nextId = 0;

beforeAll(async () => {
  engine = await createTestEngine();
  server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger: pino({ level: 'silent' }), healthPollMs: 50 });
  client = new ExtProcClient(`127.0.0.1:${server.port}`);
});

afterAll(async () => {
  client?.close();
  await server?.shutdown();
});

beforeEach(async () => {
  engine.usage.length = 0;
  await engine.resetState();
});

/** One decided request (the deciding filter's stream) under a fresh x-request-id; returns the id. */
async function decided(provider = 'openai'): Promise<string> {
  const requestId = `req-${++nextId}`;
  const call = client.process({ 'x-keypool-provider': provider });
  call.send(requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${TEST_KEYS.live}`, 'x-request-id': requestId }));
  const answer = await call.next();
  expect(answer['request_headers'], JSON.stringify(answer)).toBeDefined();
  call.send(responseHeadersMsg(200));
  await call.next();
  call.halfClose();
  await call.status;
  return requestId;
}

function observer(): ProcessCall {
  return client.process({ 'x-keypool-usage': 'observe' });
}

function bodyMsg(text: string | Uint8Array, endOfStream: boolean, observability = true): Msg {
  return { response_body: { body: Buffer.from(text), end_of_stream: endOfStream }, observability_mode: observability };
}

function observed(call: ProcessCall, requestId: string, status: number, contentType: string, chunks: readonly string[], observability = true): void {
  call.send({ ...requestHeadersMsg({ 'x-request-id': requestId }, null), observability_mode: observability });
  call.send({ ...responseHeadersMsg(status, { 'content-type': contentType }), observability_mode: observability });
  chunks.forEach((chunk, i) => call.send(bodyMsg(chunk, i === chunks.length - 1, observability)));
}

const SSE = [
  'data: {"model":"gpt-4o","choices":[{"delta":{"content":"Hel',
  'lo"}}]}\r\n\r\ndata: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2}}\r',
  '\n\r\ndata: [DONE]\r\n\r\n',
];

describe('usage observer stream', () => {
  it('in observability mode: reads the streamed body, records the usage once, answers nothing', async () => {
    const requestId = await decided();
    const call = observer();
    observed(call, requestId, 200, 'text/event-stream', SSE);
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    expect(engine.usage[0]).toMatchObject({
      usage: { inputTokens: 11, outputTokens: 2, cachedInputTokens: 0, cacheCreationInputTokens: 0, estimated: false },
      model: 'gpt-4o',
    });
    expect(engine.usage[0]!.ticket.pool).toBe('openai');
    await expect(call.next(300)).rejects.toThrow(/timed out/);
    call.halfClose();
    expect((await call.status).code).toBe(0);
  });

  it('not in observability mode (a misconfigured filter): every message is answered CONTINUE at once, in order', async () => {
    const requestId = await decided();
    const call = observer();
    observed(call, requestId, 200, 'text/event-stream', SSE, false);
    const kinds: string[] = [];
    for (let i = 0; i < 2 + SSE.length; i++) kinds.push(Object.keys(await call.next()).find((k) => k !== 'mode_override') ?? '');
    expect(kinds).toEqual(['request_headers', 'response_headers', 'response_body', 'response_body', 'response_body']);
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    call.halfClose();
    await call.status;
  });

  it('a stream cut before its body ended still counts what passed (estimated)', async () => {
    const requestId = await decided('anthropic');
    const call = observer();
    call.send({ ...requestHeadersMsg({ 'x-request-id': requestId }, null), observability_mode: true });
    call.send({ ...responseHeadersMsg(200, { 'content-type': 'text/event-stream' }), observability_mode: true });
    call.send(bodyMsg('data: {"type":"message_start","message":{"usage":{"input_tokens":30,"output_tokens":1}}}\n\n', false));
    call.send(bodyMsg('data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"abcdefghijkl"}}\n\n', false));
    // Let both chunks arrive before the cut.
    await new Promise((resolve) => setTimeout(resolve, 100));
    call.cancel();
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    expect(engine.usage[0]!.usage).toEqual({ inputTokens: 30, outputTokens: 3, cachedInputTokens: 0, cacheCreationInputTokens: 0, estimated: true });
  });

  it.each<[string, (body: Buffer) => Buffer]>([
    ['gzip', (body) => gzipSync(body)],
    ['br', (body) => brotliCompressSync(body)],
  ])('a %s-compressed stream cut before its body ended still counts what was decoded (estimated)', async (coding, compress) => {
    const requestId = await decided('anthropic');
    const call = observer();
    call.send({ ...requestHeadersMsg({ 'x-request-id': requestId }, null), observability_mode: true });
    call.send({ ...responseHeadersMsg(200, { 'content-type': 'text/event-stream', 'content-encoding': coding }), observability_mode: true });
    const events = Buffer.from(
      'data: {"type":"message_start","message":{"usage":{"input_tokens":30,"output_tokens":1}}}\n\n' +
        'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"abcdefghijkl"}}\n\n',
    );
    const compressed = compress(events);
    // Everything but the end of the compressed stream (its trailer): the client went away mid-completion.
    call.send(bodyMsg(compressed.subarray(0, compressed.length - 6), false));
    await new Promise((resolve) => setTimeout(resolve, 100));
    call.cancel();
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    expect(engine.usage[0]!.usage.inputTokens).toBe(30);
    expect(engine.usage[0]!.usage.estimated).toBe(true);
  });

  it.each<[string, (id: string) => [string, number, string]]>([
    ['an unknown request id', () => ['req-unknown', 200, 'application/json']],
    ['an error status', (id) => [id, 429, 'application/json']],
    ['a body that is neither JSON nor SSE', (id) => [id, 200, 'audio/mpeg']],
  ])('records nothing for %s', async (_name, pick) => {
    const [requestId, status, type] = pick(await decided());
    const call = observer();
    observed(call, requestId, status, type, ['{"usage":{"prompt_tokens":5,"completion_tokens":5}}']);
    call.halfClose();
    await call.status;
    // A later, readable response on another stream is recorded: the earlier one would have been by now.
    const later = await decided();
    const next = observer();
    observed(next, later, 200, 'application/json', ['{"usage":{"prompt_tokens":1,"completion_tokens":1}}']);
    await waitFor(() => engine.usage.length >= 1, 5_000, 'recorded usage');
    expect(engine.usage.map((u) => u.usage.inputTokens)).toEqual([1]);
    next.halfClose();
    await next.status;
  });

  it('a ticket is handed over once: a second observer of the same request records nothing', async () => {
    const requestId = await decided();
    const first = observer();
    observed(first, requestId, 200, 'application/json', ['{"usage":{"prompt_tokens":7,"completion_tokens":1}}']);
    await waitFor(() => engine.usage.length === 1, 5_000, 'recorded usage');
    const second = observer();
    observed(second, requestId, 200, 'application/json', ['{"usage":{"prompt_tokens":9,"completion_tokens":1}}']);
    second.halfClose();
    await second.status;
    first.halfClose();
    await first.status;
    expect(engine.usage.map((u) => u.usage.inputTokens)).toEqual([7]);
  });
});
