#!/usr/bin/env node
// A local stand-in for OpenAI and Anthropic, so keypool and Envoy can be tried without real provider keys
// (`npm run demo`, envoy/envoy-local.yaml). Not a model: it answers every request with a fixed reply.
//
//   node examples/mock-provider/server.mjs            # listens on 127.0.0.1:${MOCK_PORT:-8089}
//
// - POST /v1/chat/completions (OpenAI) and POST /v1/messages (Anthropic); JSON, or SSE with "stream": true.
// - Realistic rate-limit headers: x-ratelimit-{limit,remaining,reset}-{requests,tokens} (OpenAI) and
//   anthropic-ratelimit-requests-{limit,remaining,reset} (Anthropic), counted per upstream key per minute.
// - Scriptable failures, to watch keypool cool down or invalidate an account:
//     per request: send `x-mock-status: 429` (and `x-mock-retry-after: 5`) or `x-mock-status: 401` through the gateway;
//     queued:      curl -X POST localhost:8089/__mock/next -d '{"status":429,"retry_after":5,"count":2}'
// - GET /__mock/requests lists what arrived (method, path, which auth header, key's last 4 characters).
import { createServer } from 'node:http';

const PORT = Number(process.env.MOCK_PORT ?? 8089);
const HOST = process.env.MOCK_HOST ?? '127.0.0.1';
const REQUESTS_PER_MINUTE = 60;
const TOKENS_PER_MINUTE = 100_000;
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_SEEN = 1000;

/** Queued scripted answers: { status, retry_after }. */
const queue = [];
/** What arrived (bounded), for a curious human or a test. */
const seen = [];
/** Requests per upstream key in the current minute. */
const windows = new Map();

function keyOf(req) {
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return bearer?.[1] ?? req.headers['x-api-key'] ?? req.headers['api-key'] ?? null;
}

function count(key) {
  const minute = Math.floor(Date.now() / 60_000);
  const entry = windows.get(key);
  if (!entry || entry.minute !== minute) {
    if (windows.size > 10_000) windows.clear();
    windows.set(key, { minute, used: 1 });
    return 1;
  }
  entry.used += 1;
  return entry.used;
}

function limitHeaders(dialect, used) {
  const remaining = Math.max(0, REQUESTS_PER_MINUTE - used);
  const secondsLeft = 60 - (Math.floor(Date.now() / 1000) % 60);
  if (dialect === 'anthropic') {
    return {
      'anthropic-ratelimit-requests-limit': String(REQUESTS_PER_MINUTE),
      'anthropic-ratelimit-requests-remaining': String(remaining),
      'anthropic-ratelimit-requests-reset': new Date(Date.now() + secondsLeft * 1000).toISOString(),
    };
  }
  return {
    'x-ratelimit-limit-requests': String(REQUESTS_PER_MINUTE),
    'x-ratelimit-remaining-requests': String(remaining),
    'x-ratelimit-reset-requests': `${secondsLeft}s`,
    'x-ratelimit-limit-tokens': String(TOKENS_PER_MINUTE),
    'x-ratelimit-remaining-tokens': String(TOKENS_PER_MINUTE - 20 * used),
    'x-ratelimit-reset-tokens': '1s',
  };
}

function errorBody(dialect, status, message) {
  const type = status === 429 ? 'rate_limit_error' : status === 401 ? 'authentication_error' : 'api_error';
  return dialect === 'anthropic'
    ? { type: 'error', error: { type, message } }
    : { error: { type: status === 429 ? 'requests' : 'invalid_request_error', code: status === 401 ? 'invalid_api_key' : 'rate_limit_exceeded', message } };
}

function scripted(req) {
  const fromHeader = Number(req.headers['x-mock-status']);
  if (Number.isInteger(fromHeader) && fromHeader >= 400) return { status: fromHeader, retry_after: Number(req.headers['x-mock-retry-after'] ?? 1) };
  const next = queue[0];
  if (!next) return null;
  next.count -= 1;
  if (next.count <= 0) queue.shift();
  return next;
}

function json(res, status, headers, body) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function completion(dialect, model, res, headers, stream) {
  const text = 'Hello from the keypool mock provider.';
  if (!stream) {
    const body =
      dialect === 'anthropic'
        ? { id: 'msg_mock', type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', usage: { input_tokens: 5, output_tokens: 8 } }
        : { id: 'chatcmpl-mock', object: 'chat.completion', created: Math.floor(Date.now() / 1000), model, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 8, total_tokens: 13 } };
    return json(res, 200, headers, body);
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
  const events =
    dialect === 'anthropic'
      ? [
          ['message_start', { type: 'message_start', message: { id: 'msg_mock', type: 'message', role: 'assistant', model, content: [], usage: { input_tokens: 5, output_tokens: 0 } } }],
          ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
          ...text.split(' ').map((word, i) => ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: i === 0 ? word : ` ${word}` } }]),
          ['content_block_stop', { type: 'content_block_stop', index: 0 }],
          ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 8 } }],
          ['message_stop', { type: 'message_stop' }],
        ].map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
      : [
          ...text.split(' ').map((word, i) => `data: ${JSON.stringify({ id: 'chatcmpl-mock', object: 'chat.completion.chunk', model, choices: [{ index: 0, delta: { content: i === 0 ? word : ` ${word}` } }] })}\n\n`),
          'data: [DONE]\n\n',
        ];
  let i = 0;
  const timer = setInterval(() => {
    if (i < events.length) res.write(events[i++]);
    else {
      clearInterval(timer);
      res.end();
    }
  }, 20);
  res.on('close', () => clearInterval(timer));
}

function handle(req, res, raw) {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'POST' && path === '/__mock/next') {
    const { status = 429, retry_after = 1, count = 1 } = JSON.parse(raw || '{}');
    queue.push({ status, retry_after, count });
    return json(res, 200, {}, { queued: queue.length });
  }
  if (req.method === 'GET' && path === '/__mock/requests') return json(res, 200, {}, { requests: seen });
  const dialect = path.endsWith('/v1/messages') ? 'anthropic' : path.endsWith('/v1/chat/completions') ? 'openai' : null;
  if (req.method !== 'POST' || dialect === null) return json(res, 404, {}, { error: { message: `mock provider: no route for ${req.method} ${path}` } });
  const key = keyOf(req);
  if (seen.length >= MAX_SEEN) seen.shift();
  seen.push({ method: req.method, path, auth: req.headers.authorization ? 'authorization' : req.headers['x-api-key'] ? 'x-api-key' : 'none', key_last4: key ? key.slice(-4) : null, tenant: req.headers['x-keypool-tenant'] ?? null, priority: req.headers['x-keypool-priority'] ?? null });
  if (!key) return json(res, 401, {}, errorBody(dialect, 401, 'mock provider: no API key'));
  const headers = limitHeaders(dialect, count(key));
  const failure = scripted(req);
  if (failure) {
    const extra = failure.status === 429 ? { 'retry-after': String(failure.retry_after) } : {};
    return json(res, failure.status, { ...headers, ...extra }, errorBody(dialect, failure.status, `mock provider: scripted ${failure.status}`));
  }
  let body = {};
  try {
    body = JSON.parse(raw || '{}');
  } catch {
    return json(res, 400, headers, errorBody(dialect, 400, 'mock provider: body is not JSON'));
  }
  return completion(dialect, typeof body.model === 'string' ? body.model : 'mock-model', res, headers, body.stream === true);
}

const server = createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) req.destroy();
    else chunks.push(chunk);
  });
  req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  process.stdout.write(`mock provider on http://${HOST}:${port}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
