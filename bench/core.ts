// bench:core — the decision core in-process: ns per decision across config sizes, priority lookup at 10k mappings,
// the same lookup with time-based rules (mapping windows) against without, and the compile (reload) time of a
// 10k-mapping snapshot. A benchmark, never part of `npm test`.
// Also keypool's own handling of one proxied request as the ext_proc server does it, without the gRPC transport:
// request_headers -> ProcessStream -> codec -> engine.decide -> codec -> answer, then response_headers -> codec ->
// engine.observe/release -> answer (the target: request + response p50 <= 10 us), with and without protobuf.
// Prints a table and writes bench/results/core.json.
import { EventEmitter } from 'node:events';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../src/adapters/envoy/messages.js';
import { loadProtos } from '../src/adapters/envoy/protos.js';
import { DEFAULT_RETRY_CONTEXT, RetryContexts } from '../src/adapters/envoy/retry-context.js';
import { ProcessStream, type ProcessStreamDeps } from '../src/adapters/envoy/stream.js';
import { createLogger } from '../src/log.js';
import { compilePriority } from '../src/core/priority/index.js';
import { compileSnapshot, type CompiledSnapshot } from '../src/snapshot/compile.js';
import { envoyRequestHeaders, UPSTREAM_RESPONSE_HEADERS } from './lib/extproc-client.js';
import { printTargets, target, writeResults } from './lib/report.js';
import { windowBench } from './lib/window-bench.js';
import {
  NOW_MS,
  OPENAI_OK_HEADERS,
  allowedViews,
  benchEngine,
  clientKey,
  configData,
  keyring,
  mappingRow,
  measure,
  pepper,
  type Scenario,
} from './lib/synthetic.js';

const SCENARIOS: readonly Scenario[] = [
  { keys: 10, mappings: 10, accounts: 2 },
  { keys: 10_000, mappings: 10, accounts: 2 },
  { keys: 100_000, mappings: 10, accounts: 2 },
  { keys: 10, mappings: 10_000, accounts: 2 },
  { keys: 10, mappings: 10, accounts: 1_000 },
  { keys: 100_000, mappings: 10_000, accounts: 1_000 },
];

async function decisionBench(scenario: Scenario, snapshot: CompiledSnapshot) {
  const { engine, writes } = benchEngine(snapshot);
  const views = allowedViews(scenario.keys);
  let denied = 0;
  const decide = await measure(200_000, async (i) => {
    const outcome = await engine.decide(views[i % views.length]!);
    if (outcome.ticket) engine.release(outcome.ticket);
    else denied += 1;
  });
  if (denied > 0) throw new Error(`benchmark setup is wrong: ${denied} denials`);
  const roundTrip = await measure(200_000, async (i) => {
    const outcome = await engine.decide(views[i % views.length]!);
    engine.observe(outcome.ticket!, 200, OPENAI_OK_HEADERS);
    engine.release(outcome.ticket!);
  });
  await writes.stop();
  return { decide, roundTrip };
}

interface MethodCodec {
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): ProcessingRequestMsg;
  responseSerialize(value: unknown): Buffer;
}

/** What ProcessStream uses of grpc-js's ServerDuplexStream; write() hands the answer to the waiting bench. */
class FakeCall extends EventEmitter {
  readonly metadata = { get: (key: string) => (key === 'x-keypool-provider' ? ['openai'] : []) };
  writableEnded = false;
  onWrite: ((msg: ProcessingResponseMsg) => void) | null = null;
  write(msg: ProcessingResponseMsg): boolean {
    const onWrite = this.onWrite;
    this.onWrite = null;
    onWrite?.(msg);
    return true;
  }
  end(): void {
    this.writableEnded = true;
  }
}

/**
 * keypool's own work per proxied request inside the ext_proc server, minus grpc-js's HTTP/2 transport: a
 * ProcessStream (the server's per-stream state machine, as envoy.yaml drives it: no retry memory) gets request_headers and
 * response_headers as grpc-js hands them over, through the codec and the engine, until both answers are written.
 * With `protobuf`, both messages are also decoded from the bytes Envoy sends and both answers encoded (work a null
 * ext_proc server does too, except encoding keypool's header mutation).
 */
async function handlerBench(snapshot: CompiledSnapshot, protobuf: boolean) {
  // Messages built with protobufjs (as Envoy would encode them); decoded and answers encoded with what keypool's server
  // registers (the hand-written wire format).
  const codec = loadProtos().extProcService['Process'] as unknown as MethodCodec;
  const server = loadProtos().extProcServerService['Process'] as unknown as MethodCodec;
  const headerMap = (headers: Record<string, string>) => ({
    headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })),
  });
  const requests = Array.from({ length: 256 }, (_, i) =>
    codec.requestSerialize({
      request_headers: { headers: headerMap({ ...envoyRequestHeaders(clientKey(i % 10)), 'x-request-id': `req-${i}` }), end_of_stream: false },
      attributes: { 'envoy.filters.http.ext_proc': { fields: { 'source.address': { stringValue: '10.1.2.3:43122' } } } },
    }),
  );
  const response = codec.requestSerialize({ response_headers: { headers: headerMap(UPSTREAM_RESPONSE_HEADERS), end_of_stream: false } });
  const decodedRequests = requests.map((bytes) => server.requestDeserialize(bytes));
  const decodedResponse = server.requestDeserialize(response);
  const { engine, writes } = benchEngine(snapshot);
  const deps: ProcessStreamDeps = {
    engine,
    logger: createLogger('silent'),
    providerMetadataKey: 'x-keypool-provider',
    onClosed: () => undefined,
    retries: new RetryContexts(DEFAULT_RETRY_CONTEXT),
    nowMs: () => NOW_MS,
  };
  let denied = 0;
  let bytesOut = 0;
  const result = await measure(200_000, async (i) => {
    const call = new FakeCall();
    new ProcessStream(call as never, deps).start();
    const first = new Promise<ProcessingResponseMsg>((resolve) => (call.onWrite = resolve));
    call.emit('data', protobuf ? server.requestDeserialize(requests[i & 255]!) : decodedRequests[i & 255]!);
    const answer = await first;
    if (protobuf) bytesOut += server.responseSerialize(answer).length;
    if (!('request_headers' in answer)) {
      denied += 1;
      return;
    }
    const second = new Promise<ProcessingResponseMsg>((resolve) => (call.onWrite = resolve));
    call.emit('data', protobuf ? server.requestDeserialize(response) : decodedResponse);
    const continued = await second;
    if (protobuf) bytesOut += server.responseSerialize(continued).length;
    call.emit('end');
    call.emit('close');
  });
  await writes.stop();
  if (denied > 0) throw new Error(`benchmark setup is wrong: ${denied} denials`);
  return { ...result, bytesOut };
}

/**
 * The cost of quotas and priority reserves: the same 10k-key pool decided with neither (reserves 0, no limits) and
 * with both (every key rpm+rpd, its tenant rpm+rpd, accounts with an rpm limit, the default reserves at P7). Limits
 * are high enough that every decision is an allow: what is measured is the checking and counting.
 */
async function quotaBench(): Promise<{ base: Awaited<ReturnType<typeof measure>>; quotas: Awaited<ReturnType<typeof measure>> }> {
  const scenario: Scenario = { keys: 10_000, mappings: 10, accounts: 2 };
  const plain = configData(scenario);
  const base = { ...plain, settings: { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000, reserve: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] } };
  const HIGH = 1_000_000_000;
  const limited = {
    ...plain,
    accounts: plain.accounts.map((a) => ({ ...a, rpmLimit: HIGH })),
    keys: plain.keys.map((k) => ({ ...k, rpmLimit: HIGH, rpdLimit: HIGH })),
    tenants: Array.from({ length: 50 }, (_, i) => ({
      id: `tenant-${i}`,
      name: `tenant-${i}`,
      rpmLimit: HIGH,
      rpdLimit: HIGH,
      createdAt: new Date(NOW_MS),
      updatedAt: new Date(NOW_MS),
    })),
  };
  const run = async (data: typeof plain) => {
    const { engine, writes } = benchEngine(compileSnapshot(data, { pepper, keyring }, 1, NOW_MS));
    const views = allowedViews(scenario.keys);
    let denied = 0;
    const result = await measure(200_000, async (i) => {
      const outcome = await engine.decide(views[i % views.length]!);
      if (outcome.ticket) engine.release(outcome.ticket);
      else denied += 1;
    });
    await writes.stop();
    if (denied > 0) throw new Error(`benchmark setup is wrong: ${denied} denials`);
    return result;
  };
  // Alternate to spread machine noise over both.
  const baseFirst = await run(base);
  const quotasFirst = await run(limited);
  const baseSecond = await run(base);
  const quotasSecond = await run(limited);
  const better = (a: typeof baseFirst, b: typeof baseFirst) => (a.p50 <= b.p50 ? a : b);
  return { base: better(baseFirst, baseSecond), quotas: better(quotasFirst, quotasSecond) };
}

/** BENCH_CORE_ONLY=quota: only the quota/reserve comparison (a quick look; writes no results file). */
async function quotaOnly(): Promise<void> {
  const quota = await quotaBench();
  const us = (ns: number) => (ns / 1000).toFixed(2);
  console.log(
    `quotas + reserves, 10k keys: decide p50 ${us(quota.quotas.p50)} us vs ${us(quota.base.p50)} us without ` +
      `(+${us(quota.quotas.p50 - quota.base.p50)} us), p99 ${us(quota.quotas.p99)} vs ${us(quota.base.p99)} us`,
  );
}

async function main(): Promise<void> {
  if (process.env['BENCH_CORE_ONLY'] === 'quota') return quotaOnly();
  const rows: Array<Record<string, number | string>> = [];
  let smallSnapshot: CompiledSnapshot | null = null;
  for (const scenario of SCENARIOS) {
    const data = configData(scenario);
    const compileStarted = process.hrtime.bigint();
    const snapshot = compileSnapshot(data, { pepper, keyring }, 1, NOW_MS);
    const compileMs = Number(process.hrtime.bigint() - compileStarted) / 1e6;
    smallSnapshot ??= snapshot;
    const { decide, roundTrip } = await decisionBench(scenario, snapshot);
    rows.push({
      keys: scenario.keys,
      mappings: scenario.mappings,
      accounts: scenario.accounts,
      decideP50Ns: Math.round(decide.p50),
      decideP99Ns: Math.round(decide.p99),
      requestAndResponseP50Ns: Math.round(roundTrip.p50),
      compileMs: Number(compileMs.toFixed(1)),
    });
  }

  // Priority lookup alone at 10k non-regex mappings, keys that hit each rule kind and keys that miss.
  const mappings = Array.from({ length: 10_000 }, (_, i) => mappingRow(i));
  const inputs = mappings.map((m) => ({ ...m, tenantId: null, tenantName: null, createdAtMs: m.createdAt.getTime() }));
  const compileStarted = process.hrtime.bigint();
  const matcher = compilePriority(inputs, { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 });
  const priorityCompileMs = Number(process.hrtime.bigint() - compileStarted) / 1e6;
  const probes = Array.from({ length: 1024 }, (_, i) => clientKey(i * 7));
  let sink = 0;
  const lookupStarted = process.hrtime.bigint();
  const lookups = 2_000_000;
  for (let i = 0; i < lookups; i += 1) sink += matcher.resolve(probes[i & 1023]!, NOW_MS).priority;
  const priorityNs = Number(process.hrtime.bigint() - lookupStarted) / lookups;

  // The same lookup with time-based rules (mapping windows) beside it: what windows add per request.
  const windows = windowBench();

  // Reload of a 10k-mapping snapshot (compile only: what a change-feed reload costs besides the SELECTs).
  const reloadData = configData({ keys: 10, mappings: 10_000, accounts: 2 });
  const reload = await measure(30, () => compileSnapshot(reloadData, { pepper, keyring }, 2, NOW_MS));

  const quota = await quotaBench();
  const quotaCostNs = quota.quotas.p50 - quota.base.p50;
  const handler = await handlerBench(smallSnapshot!, false);
  const handlerWithProtobuf = await handlerBench(smallSnapshot!, true);

  console.table(rows);
  console.log(`priority lookup at 10k mappings: ${priorityNs.toFixed(0)} ns/lookup (compile ${priorityCompileMs.toFixed(1)} ms; checksum ${sink})`);
  console.log('priority lookup with mapping windows (ns/lookup, best of 7 alternating runs):');
  console.table(windows);
  console.log(`snapshot reload with 10k mappings: p50 ${(reload.p50 / 1e6).toFixed(2)} ms, p99 ${(reload.p99 / 1e6).toFixed(2)} ms`);
  const us = (ns: number) => (ns / 1000).toFixed(2);
  console.log(
    `quotas + reserves (key rpm/rpd, tenant rpm/rpd, account rpm, reserve 0.25), 10k keys: decide p50 ${us(quota.quotas.p50)} us ` +
      `vs ${us(quota.base.p50)} us without (+${us(quotaCostNs)} us), p99 ${us(quota.quotas.p99)} vs ${us(quota.base.p99)} us`,
  );
  console.log(`ext_proc handler in-process (ProcessStream + codec + engine, request and response): p50 ${us(handler.p50)} us, p99 ${us(handler.p99)} us`);
  console.log(`  the same with protobuf decode + encode of both messages: p50 ${us(handlerWithProtobuf.p50)} us, p99 ${us(handlerWithProtobuf.p99)} us`);
  const engineOnly = rows[0]!['requestAndResponseP50Ns'] as number;
  const targets = [
    target('own handling, request + response, p50 (engine alone)', engineOnly / 1000, 10, 'us', '<=', '10 keys / 10 mappings / 2 accounts'),
    target(
      'own handling, request + response, p50 (ext_proc handler: stream + codec + engine)',
      handler.p50 / 1000,
      10,
      'us',
      '<=',
      `p99 ${us(handler.p99)} us; with protobuf decode/encode p50 ${us(handlerWithProtobuf.p50)} us`,
    ),
    target('added cost of quotas + priority reserves per decision, p50', quotaCostNs / 1000, 1, 'us', '<=', '10k keys, key and tenant rpm+rpd, memory rate state'),
  ];
  printTargets(targets);

  writeResults('core', {
    decisions: rows,
    priorityLookupNsAt10kMappings: Math.round(priorityNs),
    priorityLookupWithWindows: windows,
    reload10kMappingsMs: { p50: reload.p50 / 1e6, p99: reload.p99 / 1e6 },
    extProcHandlerNs: { p50: Math.round(handler.p50), p99: Math.round(handler.p99), mean: Math.round(handler.mean) },
    extProcHandlerWithProtobufNs: { p50: Math.round(handlerWithProtobuf.p50), p99: Math.round(handlerWithProtobuf.p99), mean: Math.round(handlerWithProtobuf.mean) },
    quotaReserveDecideNs: {
      without: { p50: Math.round(quota.base.p50), p99: Math.round(quota.base.p99) },
      with: { p50: Math.round(quota.quotas.p50), p99: Math.round(quota.quotas.p99) },
    },
    targets,
  });
}

await main();
