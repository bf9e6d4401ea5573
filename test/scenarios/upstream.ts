// The provider behind Envoy in the scenario runs: a plain HTTP server on a free loopback port that records every
// request it receives and answers each with whatever `answer` resolves to. An answer that resolves later keeps the
// request in flight with no response headers yet (what a slow provider looks like to the gateway).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { UpstreamReply } from './table.js';

export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

/** A reply whose headers go out at once and whose body is written when `bodyAfter` settles. */
export interface StreamedReply {
  readonly reply: UpstreamReply;
  readonly bodyAfter: Promise<unknown>;
}

export class ScenarioUpstream {
  readonly received: ReceivedRequest[] = [];
  /** Decides the reply to each request; replaced per request by the driver. */
  answer: (request: ReceivedRequest) => UpstreamReply | Promise<UpstreamReply> | StreamedReply = () => ({
    status: 500,
    headers: { 'content-type': 'text/plain' },
    body: 'scenario upstream: no answer configured',
  });
  private server: Server | null = null;

  async start(): Promise<number> {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const request: ReceivedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers };
        this.received.push(request);
        const answer = this.answer(request);
        if ('bodyAfter' in answer) {
          res.writeHead(answer.reply.status, answer.reply.headers);
          res.flushHeaders();
          void answer.bodyAfter.then(() => res.end(answer.reply.body), () => res.destroy());
          return;
        }
        void Promise.resolve(answer).then(
          (reply) => {
            res.writeHead(reply.status, reply.headers);
            res.end(reply.body);
          },
          () => res.destroy(),
        );
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
