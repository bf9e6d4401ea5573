// A stand-in LLM provider: a plain Node HTTP server on a free loopback port that records what each
// request carried and answers from a script (status + headers + body, or a held-open SSE stream).
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export type Reply =
  | { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string | Buffer }
  | {
      readonly sse: true;
      /** Written immediately after the headers. */
      readonly first: string;
      /** The stream stays open until this settles, then `rest` is written and the response ends. */
      readonly holdUntil: Promise<unknown>;
      readonly rest: string;
    };

export class MockUpstream {
  readonly received: ReceivedRequest[] = [];
  private readonly script: Reply[] = [];
  private server: Server | null = null;
  port = 0;
  /** Consulted first for every request; undefined falls through to the script, then the fallback. */
  respond: ((request: ReceivedRequest) => Reply | undefined) | null = null;
  /** Used when the script is empty. */
  fallback: Reply = {
    status: 200,
    headers: { 'content-type': 'application/json', 'x-ratelimit-remaining-requests': '99' },
    body: '{"id":"chatcmpl-1","object":"chat.completion","choices":[]}',
  };

  /** Queue replies for the next requests, in order. */
  enqueue(...replies: Reply[]): void {
    this.script.push(...replies);
  }

  reset(): void {
    this.received.length = 0;
    this.script.length = 0;
    this.respond = null;
  }

  async start(): Promise<number> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const request: ReceivedRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        };
        this.received.push(request);
        void this.answer(res, this.respond?.(request) ?? this.script.shift() ?? this.fallback);
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  private async answer(res: ServerResponse, reply: Reply): Promise<void> {
    if ('sse' in reply) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(reply.first);
      await reply.holdUntil.catch(() => undefined);
      res.end(reply.rest);
      return;
    }
    res.writeHead(reply.status, reply.headers ?? {});
    res.end(reply.body ?? '');
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.server = null;
  }
}

type BodyReader = ReadableStreamDefaultReader<Uint8Array>;

/** The first chunk the client receives; fails if it does not arrive while the upstream holds the rest. */
export async function firstChunk(reader: BodyReader): Promise<string> {
  const first = await Promise.race([
    reader.read(),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('first chunk was buffered')), 3_000)),
  ]);
  return Buffer.from(first.value ?? []).toString();
}

/** Everything the client receives after what it has read so far, until the response ends. */
export async function restOfBody(reader: BodyReader): Promise<string> {
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text;
    text += Buffer.from(value).toString();
  }
}
