// A bench child for bench/sse-usage.ts: an ext_proc gRPC server that reads streamed response bodies for their token
// usage (src/core/usage-stream.ts) the way each evaluated mechanism needs, chosen per stream by gRPC metadata
// `x-bench-mode`:
//   main      answers request_headers and response_headers with CONTINUE (keypool's usual filter; no body)
//   streamed  also receives every response_body chunk and answers each at once with CONTINUE (Envoy waits for it)
//   observe   a second filter in observability_mode: receives everything, answers nothing (Envoy does not wait)
// Announces { port } to the parent (bench/lib/procs.ts); `usage` returns what the streams read and clears it.
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/adapters/envoy/protos.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../../src/adapters/envoy/messages.js';
import { UsageReader } from '../../src/core/usage-stream.js';
import type { TokenUsage } from '../../src/core/usage.js';
import { serveParent } from './child.js';

const read: Array<{ mode: string; usage: TokenUsage | null; chunks: number }> = [];

function process(call: grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>): void {
  const mode = String(call.metadata.get('x-bench-mode')[0] ?? 'main');
  const reader = new UsageReader('openai');
  let chunks = 0;
  call.on('data', (msg: ProcessingRequestMsg) => {
    if (msg.request === 'response_body') {
      const body = msg.response_body?.body;
      if (body !== undefined && body.length > 0) reader.push(body);
      chunks += 1;
      if (msg.response_body?.end_of_stream === true) read.push({ mode, usage: reader.finish(), chunks });
    }
    if (mode === 'observe') return;
    if (msg.request === 'request_headers') call.write({ request_headers: {} });
    else if (msg.request === 'response_headers') call.write({ response_headers: {} });
    else if (msg.request === 'response_body') call.write({ response_body: {} });
  });
  call.on('end', () => call.end());
  call.on('error', () => undefined);
}

const { extProcService } = loadProtos();
const server = new grpc.Server();
server.addService(extProcService, { Process: process });
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
);
serveParent(
  { port },
  {
    usage: () => {
      const answer = { read: read.splice(0) };
      return answer;
    },
  },
  async () => {
    server.forceShutdown();
  },
);
