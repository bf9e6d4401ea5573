// bench:extproc — keypool's ext_proc server alone, against a null ext_proc server measured the same way in the same
// run, driven by a client that sends what Envoy sends (bench/lib/extproc-client.ts). A benchmark, never part of
// `npm test`. Prints a table and writes bench/results/extproc.json.
//
// Layout (2+ CPUs): every server runs pinned to CPU 1 (`taskset -c 1`), this process (the client) on CPU 0.
// Servers: null (grpc-js, CONTINUE, no work), keypool (in-memory state), keypool with Redis state (a private
// redis-server when installed, not pinned), and both again with quotas and priority reserves on (key and tenant
// rpm+rpd, account rpm, P7 with its 25 % reserve; limits far above the load, so every request is still admitted). Phases are interleaved across servers so drift on a shared machine
// hits all of them alike:
//   saturation   64 streams in flight over 4 connections for SAT_MS: req/s (median of rounds), server CPU per
//                request and how busy the server's CPU was (below 100%: the rest went to other processes or idling)
//   fixed rates  1k / 2k / 5k req/s open loop for RATE_MS each: p50/p99 from scheduled send time, CPU per request
// in ROUNDS rounds (latencies pooled over rounds).
// Redis mode: commands per request from INFO commandstats, awaited round trips from MONITOR (which EVALSHA is the
// admission: the only call the decision waits for).
// BENCH_CPU_PROF=1 additionally profiles keypool under saturation (V8's CPU profiler, as `node --cpu-prof`, over the
// load window only) and prints the top frames; BENCH_PROFILE_ONLY=1 does only that.
// BENCH_TRACING=1 runs the keypool servers with OpenTelemetry traces on, exported to an OTLP sink in this process
// (bench/lib/otlp-sink.ts), and writes bench/results/extproc-tracing-on.json; BENCH_TRACING=0 is the same run with
// traces off (extproc-tracing-off.json), for the comparison.
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExtProcLoad, streamEndFromShippedConfig } from './lib/extproc-client.js';
import { closedLoop, constantRate, sequential } from './lib/load.js';
import { CPUS, pinSelf, startNodeChild, type NodeChild } from './lib/procs.js';
import { summarizeProfile } from './lib/profile.js';
import { startBenchRedis } from './lib/redis.js';
import { startOtlpSink } from './lib/otlp-sink.js';
import { REPO_ROOT, RESULTS_DIR, markdownTable, percentiles, printTargets, round1, round2, target, writeResults, type Target } from './lib/report.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const SAT_MS = Number(process.env['BENCH_SAT_MS'] ?? 2_000);
const RATE_MS = Number(process.env['BENCH_RATE_MS'] ?? 2_000);
const RATES = [1_000, 2_000, 5_000];
/**
 * Like Envoy with 4 workers: one connection each, 16 streams in flight on each. A single connection cannot keep a
 * grpc-js server busy (measured: ~55-65% of its CPU at any concurrency; the two ends take turns), so saturation
 * needs several.
 */
const CONNECTIONS = 4;
const SAT_CONCURRENCY = 64;
const SERVER_SCRIPT = fileURLToPath(new URL('./lib/extproc-server.js', import.meta.url));

/** The runtime reads a few settings straight from the environment: keep the caller's out of the children. */
const CLEAN_ENV: NodeJS.ProcessEnv = { DATABASE_URL: '', REDIS_URL: '', KEYPOOL_ENCRYPTION_KEYS: '', KEYPOOL_KEY_PEPPER: '' };
/** BENCH_TRACING=1: the servers export traces to this sink (the null server ignores the variables). */
const TRACING = process.env['BENCH_TRACING'];
const otlpSink = TRACING === '1' ? await startOtlpSink() : null;

interface Server {
  readonly name: string;
  readonly child: NodeChild;
  readonly load: ExtProcLoad;
}

async function startServer(name: string, args: string[], nodeArgs: string[] = []): Promise<Server> {
  const child = await startNodeChild({ script: SERVER_SCRIPT, args, nodeArgs, cpuList: CPUS.sut, env: { ...CLEAN_ENV, ...otlpSink?.env } });
  const load = new ExtProcLoad(Number(child.ready['port']), String(child.ready['clientKey']), CONNECTIONS);
  await load.connect();
  return { name, child, load };
}

/** One decoded request through `server`: the null server continues, keypool must allow with a pooled key. */
async function checkSetup(server: Server): Promise<void> {
  const [first, second] = (await server.load.probe()) as Array<Record<string, any>>;
  if (server.name === 'null') {
    if (!first?.['request_headers'] || !second?.['response_headers']) throw new Error(`null server answered ${JSON.stringify([first, second])}`);
    return;
  }
  const set = first?.['request_headers']?.response?.header_mutation?.set_headers as Array<{ header: { key: string; raw_value: Buffer } }> | undefined;
  const auth = set?.find((h) => h.header.key === 'authorization')?.header.raw_value.toString();
  if (!auth?.startsWith('Bearer sk-bench-') || !second?.['response_headers']) {
    throw new Error(`${server.name} did not allow the bench request: ${JSON.stringify(first)}`);
  }
  const priority = set?.find((h) => h.header.key === 'x-keypool-priority')?.header.raw_value.toString();
  const expected = server.name.endsWith('-quotas') ? '7' : '3';
  if (priority !== expected) throw new Error(`${server.name}: priority ${String(priority)}, expected P${expected}`);
}

/** Totals of one phase (one server, one load shape) summed over rounds. */
class Phase {
  completed = 0;
  errors = 0;
  elapsedMs = 0;
  serverCpuUs = 0;
  clientCpuUs = 0;
  readonly rates: number[] = [];
  private readonly latencies: Float64Array[] = [];
  private readonly lags: number[] = [];

  add(run: { completed: number; errors: number; elapsedMs: number; serverCpuUs: number; clientCpuUs: number; rate: number; latUs?: Float64Array; sendLagP99Us?: number }): void {
    this.completed += run.completed;
    this.errors += run.errors;
    this.elapsedMs += run.elapsedMs;
    this.serverCpuUs += run.serverCpuUs;
    this.clientCpuUs += run.clientCpuUs;
    this.rates.push(run.rate);
    if (run.latUs) this.latencies.push(run.latUs);
    if (run.sendLagP99Us !== undefined) this.lags.push(run.sendLagP99Us);
  }

  summary(): Measured {
    const all = new Float64Array(this.latencies.reduce((n, l) => n + l.length, 0));
    let offset = 0;
    for (const l of this.latencies) {
      all.set(l, offset);
      offset += l.length;
    }
    const lat = all.length ? percentiles(all) : null;
    const sortedRates = [...this.rates].sort((a, b) => a - b);
    return {
      rate: sortedRates[Math.floor(sortedRates.length / 2)]!,
      rounds: this.rates.map(Math.round),
      completed: this.completed,
      cpuUsPerRequest: this.serverCpuUs / Math.max(1, this.completed),
      clientCpuPercent: (this.clientCpuUs / 1000 / this.elapsedMs) * 100,
      errors: this.errors,
      ...(lat ? { p50Us: lat.p50, p99Us: lat.p99, p999Us: lat.p999 } : {}),
      ...(this.lags.length ? { sendLagP99Us: Math.max(...this.lags) } : {}),
    };
  }
}

interface Measured {
  /** Median over rounds (saturation: completed req/s; fixed rate: the offered rate's achieved completions/s). */
  rate: number;
  rounds: number[];
  completed: number;
  cpuUsPerRequest: number;
  clientCpuPercent: number;
  p50Us?: number;
  p99Us?: number;
  p999Us?: number;
  errors: number;
  sendLagP99Us?: number;
}

async function saturate(server: Server, phase: Phase): Promise<void> {
  const cpu0 = await server.child.cpuUs();
  const client0 = process.cpuUsage();
  const result = await closedLoop(server.load.fire, SAT_CONCURRENCY, SAT_MS);
  const client = process.cpuUsage(client0);
  phase.add({ ...result, serverCpuUs: (await server.child.cpuUs()) - cpu0, clientCpuUs: client.user + client.system });
}

async function fixedRate(server: Server, rate: number, phase: Phase): Promise<void> {
  const cpu0 = await server.child.cpuUs();
  const client0 = process.cpuUsage();
  const started = performance.now();
  const result = await constantRate(server.load.fire, rate, RATE_MS);
  const client = process.cpuUsage(client0);
  phase.add({
    completed: result.completed,
    errors: result.errors,
    elapsedMs: performance.now() - started,
    serverCpuUs: (await server.child.cpuUs()) - cpu0,
    clientCpuUs: client.user + client.system,
    rate: result.achievedRate,
    latUs: result.latUs,
    sendLagP99Us: result.sendLagP99Us,
  });
}

/** Top-level commands (not the ones scripts run) per request, from INFO commandstats deltas. */
const CLIENT_COMMANDS = ['evalsha', 'eval', 'zrem', 'script'];

async function main(): Promise<void> {
  const pinnedCpus = pinSelf(CPUS.load);
  console.log(pinnedCpus ? 'client on CPU 0, servers pinned to CPU 1 (taskset)' : '[notice] no taskset or a single CPU: processes are not pinned');
  const style = streamEndFromShippedConfig();
  const source = process.env['BENCH_STREAM_END'] ? 'BENCH_STREAM_END' : 'as the shipped envoy/envoy.yaml makes Envoy end them';
  console.log(`streams end: ${style.end} (${source}), at most ${style.maxStreamsPerConnection} per connection`);
  const redis = await startBenchRedis(pinnedCpus ? CPUS.any : null);
  if (process.env['BENCH_PROFILE_ONLY'] === '1') {
    try {
      await profileServer('null', ['null']);
      await profileServer('keypool', ['keypool']);
      await profileServer('keypool-redis', ['keypool', redis.url]);
    } finally {
      await redis.stop();
    }
    return;
  }
  const servers: Server[] = [];
  try {
    servers.push(await startServer('null', ['null']));
    servers.push(await startServer('keypool', ['keypool']));
    servers.push(await startServer('keypool-redis', ['keypool', redis.url]));
    servers.push(await startServer('keypool-quotas', ['keypool', '-', 'quotas']));
    servers.push(await startServer('keypool-redis-quotas', ['keypool', redis.url, 'quotas']));
    for (const server of servers) {
      await checkSetup(server);
      await closedLoop(server.load.fire, SAT_CONCURRENCY, 1_500); // warm-up: JIT, connection windows
      await sequential(server.load.fire, 2_000);
    }

    const sat = new Map(servers.map((s) => [s.name, new Phase()]));
    const fixed = new Map(servers.map((s) => [s.name, new Map(RATES.map((r) => [r, new Phase()]))]));
    const redisDelta: Record<string, number> = {};
    let redisRequests = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const server of servers) {
        const isRedis = server.name === 'keypool-redis'; // commands per request: the plain Redis mode
        const before = isRedis ? await redis.commandCalls() : null;
        const completedBefore = sat.get(server.name)!.completed;
        await saturate(server, sat.get(server.name)!);
        if (before) {
          const after = await redis.commandCalls();
          for (const command of CLIENT_COMMANDS) redisDelta[command] = (redisDelta[command] ?? 0) + (after[command] ?? 0) - (before[command] ?? 0);
          redisRequests += sat.get(server.name)!.completed - completedBefore;
        }
      }
      for (const rate of RATES) for (const server of servers) await fixedRate(server, rate, fixed.get(server.name)!.get(rate)!);
      console.log(
        `round ${round}/${ROUNDS}: saturation ${servers.map((s) => `${s.name} ${sat.get(s.name)!.rates.at(-1)!.toFixed(0)}`).join(', ')} req/s`,
      );
    }
    const redisCommands = Object.fromEntries(Object.entries(redisDelta).filter(([, n]) => n > 0).map(([c, n]) => [c, round2(n / redisRequests)]));

    // Which Redis calls one decision waits for: 500 requests one at a time under MONITOR.
    const perRequest = (n: number | undefined) => round2((n ?? 0) / 500);
    const monitorCalls = async (name: string): Promise<Record<string, unknown> | null> => {
      const server = servers.find((s) => s.name === name)!;
      const monitored = redis.private ? await redis.monitor(async () => void (await sequential(server.load.fire, 500))) : null;
      return monitored
        ? { admitEvalshaPerRequest: perRequest(monitored['admit']), observeEvalshaPerRequest: perRequest(monitored['observe']), zremPerRequest: perRequest(monitored['zrem']), monitored }
        : null;
    };
    const redisCalls = await monitorCalls('keypool-redis');
    // With quotas and reserves the key's and tenant's windows are checked and charged by the same admission script.
    const redisCallsQuotas = await monitorCalls('keypool-redis-quotas');

    const errors = servers.reduce((n, s) => n + s.load.counts.errors + s.load.counts.denied + s.load.sessionsLost, 0);
    let profile: unknown = null;
    if (process.env['BENCH_CPU_PROF'] === '1') {
      profile = {
        null: await profileServer('null', ['null']),
        keypool: await profileServer('keypool', ['keypool']),
        'keypool-redis': await profileServer('keypool-redis', ['keypool', redis.url]),
      };
    }

    const satSummary = Object.fromEntries([...sat].map(([name, phase]) => [name, phase.summary()]));
    const fixedSummary = Object.fromEntries(
      [...fixed].map(([name, byRate]) => [name, Object.fromEntries([...byRate].map(([rate, phase]) => [rate, phase.summary()]))]),
    );
    report(satSummary, fixedSummary, redisCommands, redisCalls, redisCallsQuotas, errors, redis.private, pinnedCpus, profile);
  } finally {
    for (const server of servers) {
      server.load.close();
      await server.child.stop();
    }
    await redis.stop();
  }
}

async function profileServer(name: string, args: string[]): Promise<unknown> {
  const dir = join(RESULTS_DIR, 'profiles');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `extproc-${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
  const server = await startServer(name, args);
  try {
    await closedLoop(server.load.fire, SAT_CONCURRENCY, 1_500);
    await server.child.ask('profileStart');
    await closedLoop(server.load.fire, SAT_CONCURRENCY, SAT_MS * 2);
    await server.child.ask('profileStop', { file });
  } finally {
    server.load.close();
    await server.child.stop();
  }
  const summary = summarizeProfile(file);
  console.log(`\nCPU profile of ${name} under saturation (${SAT_MS * 2} ms window): ${file}`);
  console.log(markdownTable(['self %', 'function', 'where'], summary.topFunctions.slice(0, 25).map((f) => [f.selfPercent, f.name, f.where])));
  console.log(markdownTable(['self %', 'area'], summary.byArea.filter((a) => a.selfPercent >= 0.5).map((a) => [a.selfPercent, a.area])));
  return { file: relative(REPO_ROOT, file), ...summary };
}

function report(
  sat: Record<string, Measured>,
  fixed: Record<string, Record<number, Measured>>,
  redisCommands: Record<string, number>,
  redisCalls: Record<string, unknown> | null,
  redisCallsQuotas: Record<string, unknown> | null,
  errors: number,
  privateRedis: boolean,
  pinnedCpus: boolean,
  profile: unknown,
): void {
  const names = Object.keys(sat);
  const rows = names.map((name) => {
    const s = sat[name]!;
    const busy = (s.cpuUsPerRequest * s.rate) / 1e4;
    const row: Array<string | number> = [name, `${Math.round(s.rate)} (CPU ${Math.round(busy)}% busy)`, Math.round(1e6 / s.cpuUsPerRequest), round1(s.cpuUsPerRequest)];
    for (const rate of RATES) {
      const f = fixed[name]![rate]!;
      row.push(`${round1(f.p50Us!)} / ${round1(f.p99Us!)}`);
    }
    row.push(round1(fixed[name]![2_000]!.cpuUsPerRequest));
    return row;
  });
  const ratio = (name: string) => {
    const row: Array<string | number> = [
      `ratio ${name} / null`,
      `x${round2(sat[name]!.rate / sat['null']!.rate)}`,
      `x${round2(sat['null']!.cpuUsPerRequest / sat[name]!.cpuUsPerRequest)}`,
      `x${round2(sat[name]!.cpuUsPerRequest / sat['null']!.cpuUsPerRequest)}`,
    ];
    for (const rate of RATES) row.push(`p99 x${round2(fixed[name]![rate]!.p99Us! / fixed['null']![rate]!.p99Us!)}`);
    row.push(`x${round2(fixed[name]![2_000]!.cpuUsPerRequest / fixed['null']![2_000]!.cpuUsPerRequest)}`);
    return row;
  };
  const table = markdownTable(
    ['ext_proc server (pinned to 1 CPU)', 'req/s at saturation', 'req/s per fully used core', 'CPU us/req at saturation', '1k req/s p50 / p99 us', '2k req/s p50 / p99 us', '5k req/s p50 / p99 us', 'CPU us/req at 2k req/s'],
    [...rows, ratio('keypool'), ratio('keypool-redis'), ratio('keypool-quotas'), ratio('keypool-redis-quotas')],
  );
  console.log(`\n${table}`);
  console.log(`client CPU at saturation: ${names.map((n) => `${n} ${Math.round(sat[n]!.clientCpuPercent)}%`).join(', ')} (100% would mean the client, not the server, was the limit)`);
  console.log(`generator send lag p99 at fixed rates: ${names.map((n) => RATES.map((r) => round1(fixed[n]![r]!.sendLagP99Us!)).join('/')).join(', ')} us`);
  console.log(`Redis commands per request at saturation${privateRedis ? '' : ' (shared Redis: includes other clients)'}: ${JSON.stringify(redisCommands)}`);
  if (redisCalls) console.log(`Redis calls per request (MONITOR, one at a time): ${JSON.stringify(redisCalls)}`);
  if (redisCallsQuotas) console.log(`... with quotas and reserves: ${JSON.stringify(redisCallsQuotas)}`);
  if (errors > 0) console.log(`[warning] ${errors} requests failed or were denied`);

  const kp = 'keypool';
  const cpuRatio2k = fixed[kp]![2_000]!.cpuUsPerRequest / fixed['null']![2_000]!.cpuUsPerRequest;
  const cpuRatioSat = sat[kp]!.cpuUsPerRequest / sat['null']!.cpuUsPerRequest;
  const targets: Target[] = [
    target('CPU per request keypool / null ext_proc (2k req/s)', cpuRatio2k, 1.3, 'x', '<=', `${round1(fixed[kp]![2_000]!.cpuUsPerRequest)} vs ${round1(fixed['null']![2_000]!.cpuUsPerRequest)} us; at saturation x${round2(cpuRatioSat)}`),
    target(
      'throughput per core (keypool, headers only)',
      sat[kp]!.rate,
      5_000,
      'req/s',
      '>=',
      `${pinnedCpus ? 'server pinned to one CPU' : 'not pinned'}, using ${Math.round((sat[kp]!.cpuUsPerRequest * sat[kp]!.rate) / 1e4)}% of it; ${Math.round(1e6 / sat[kp]!.cpuUsPerRequest)} req/s per fully used core`,
    ),
    target('Redis mode throughput / in-memory', (sat['keypool-redis']!.rate / sat[kp]!.rate) * 100, 70, '%', '>=', `${Math.round(sat['keypool-redis']!.rate)} vs ${Math.round(sat[kp]!.rate)} req/s`),
  ];
  // Added cost of quotas + reserves, whole server (gRPC included), same run and rounds. Reported, not a target: on a
  // shared 2-core machine the difference of two whole-server figures is noise of several us; the in-process cost
  // (target <= 1 us) is bench:core's quota case.
  const added = (name: string, base: string) =>
    `${round1(sat[name]!.cpuUsPerRequest - sat[base]!.cpuUsPerRequest)} us at saturation, ${round1(fixed[name]![2_000]!.cpuUsPerRequest - fixed[base]![2_000]!.cpuUsPerRequest)} us at 2k req/s`;
  console.log(`added CPU per request of quotas + reserves: in-memory ${added('keypool-quotas', kp)}; Redis ${added('keypool-redis-quotas', 'keypool-redis')}`);
  if (redisCalls) {
    // Round trips a decision waits for: the admission EVALSHA (observe and release are fire-and-forget).
    targets.push(target('Redis round trips the decision waits for', Number(redisCalls['admitEvalshaPerRequest']), 1, 'per request', '<=', `plus fire-and-forget after the answer: observe EVALSHA ${String(redisCalls['observeEvalshaPerRequest'])}, release ZREM ${String(redisCalls['zremPerRequest'])}`));
  }
  if (redisCallsQuotas) {
    targets.push(target('Redis round trips the decision waits for, with quotas + reserves', Number(redisCallsQuotas['admitEvalshaPerRequest']), 1, 'per request', '<=', 'key, tenant and account windows in the one admission script'));
  }
  printTargets(targets);
  if (otlpSink) console.log(`traces: ${otlpSink.counts.requests} OTLP exports, ${otlpSink.counts.bytes} bytes received by the sink`);
  writeResults(TRACING === '1' ? 'extproc-tracing-on' : TRACING === '0' ? 'extproc-tracing-off' : 'extproc', {
    setup: { pinned: pinnedCpus, streamEnd: streamEndFromShippedConfig(), rounds: ROUNDS, connections: CONNECTIONS, saturationConcurrency: SAT_CONCURRENCY, saturationMs: SAT_MS, rateMs: RATE_MS, privateRedis, tracing: otlpSink !== null },
    saturation: sat,
    fixedRates: fixed,
    redisCommandsPerRequest: redisCommands,
    redisCallsPerRequest: redisCalls,
    redisCallsPerRequestWithQuotas: redisCallsQuotas,
    errors,
    table,
    targets,
    profile,
  });
}

try {
  await main();
} finally {
  await otlpSink?.stop();
}
