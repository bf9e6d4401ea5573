// A minimal OTLP/HTTP trace receiver for benches: accepts POST /v1/traces, counts requests and bytes, answers 200.
// BENCH_TRACING=1 points keypool children at it (OTEL_EXPORTER_OTLP_ENDPOINT), so tracing overhead is measured with
// spans really encoded and sent, without a collector.
import { createServer, type Server } from 'node:http';

export interface OtlpSink {
  /** OTEL_* settings for a child that should export to this sink. */
  readonly env: NodeJS.ProcessEnv;
  readonly counts: { requests: number; bytes: number };
  stop(): Promise<void>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  const counts = { requests: 0, bytes: 0 };
  const server: Server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (counts.bytes += chunk.length));
    request.on('end', () => {
      counts.requests++;
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_TRACES_EXPORTER: 'otlp' },
    counts,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
