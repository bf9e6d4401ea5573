// A bench child: a stand-in LLM provider that answers every request at once with a canned OpenAI-style 200
// (rate-limit headers included, so keypool has something to observe). Raw sockets and HTTP/1.1 keep-alive, framed
// by Content-Length, so it spends little CPU per request. `last` returns the head of the last request it received
// (to check which credential reached the upstream).
import { createServer, type Socket } from 'node:net';
import { serveParent } from './child.js';

const BODY = '{"id":"chatcmpl-bench","object":"chat.completion","created":1732270000,"model":"gpt-4o-mini","choices":[]}';
const RESPONSE = Buffer.from(
  [
    'HTTP/1.1 200 OK',
    'content-type: application/json',
    'openai-processing-ms: 312',
    'openai-version: 2020-10-01',
    'x-ratelimit-limit-requests: 10000',
    'x-ratelimit-limit-tokens: 2000000',
    'x-ratelimit-remaining-requests: 9999',
    'x-ratelimit-remaining-tokens: 1999950',
    'x-ratelimit-reset-requests: 6ms',
    'x-ratelimit-reset-tokens: 1ms',
    'x-request-id: req_0123456789abcdef0123456789abcdef',
    `content-length: ${Buffer.byteLength(BODY)}`,
    '',
    BODY,
  ].join('\r\n'),
  'latin1',
);
const HEADER_END = Buffer.from('\r\n\r\n');

let lastHead = '';
let served = 0;

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let pending: Buffer | null = null;
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    let buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    for (;;) {
      const headerEnd = buffer.indexOf(HEADER_END);
      if (headerEnd < 0) break;
      const head = buffer.toString('latin1', 0, headerEnd);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const total = headerEnd + 4 + (length ? Number(length[1]) : 0);
      if (buffer.length < total) break;
      lastHead = head;
      served++;
      socket.write(RESPONSE);
      buffer = buffer.subarray(total);
    }
    if (buffer.length > 0) pending = buffer;
  });
}

const sockets = new Set<Socket>();
const server = createServer((socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
  serve(socket);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
const address = server.address();
serveParent(
  { port: typeof address === 'object' && address ? address.port : 0 },
  { last: () => ({ head: lastHead, served }) },
  () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy(); // Envoy keeps its upstream connections open
    }),
);
