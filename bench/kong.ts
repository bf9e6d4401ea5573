// bench:kong — the keypool plugin inside the real kong-js-pluginserver (npm kong-pdk), driven over its unix socket
// with Kong's MessagePack-RPC exactly as Kong's bridge loop does (test/helpers/kong-rpc.ts): plugin.HandleEvent,
// then one plugin.Step* per PDK call, each a socket round trip. The plugin is the shipped kong/plugins/keypool.cjs
// over the project's build (dist/), with the real runtime on an embedded store. A null plugin (one PDK call per
// phase, no work) in a second plugin server is measured the same way in the same run as the floor of the protocol.
// Requests: allowed (valid key; log phase sees an OpenAI 200 with rate-limit headers) and denied (unknown key).
// LOG_LEVEL is production's default (info): keypool logs one line per denial.
// A benchmark, never part of `npm test`. Prints a table and writes bench/results/kong.json.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DECISION_KEY } from '../src/adapters/kong/codec.js';
import { openRuntime } from '../src/runtime.js';
import { KongRpcClient, runPhase, startInstance, startPluginServer, type PluginServer } from '../test/helpers/kong-rpc.js';
import { KongRequest } from '../test/kong/kong-request.js';
import { CPUS, pinSelf, procCpuUs, sleep, taskset } from './lib/procs.js';
import { markdownTable, percentiles, REPO_ROOT, round1, writeResults, type Percentiles } from './lib/report.js';
import { execFileSync } from 'node:child_process';

const REQUESTS = Number(process.env['BENCH_KONG_REQUESTS'] ?? 3_000);
const ROUNDS = 3;
const RUNTIME_ENV_NAMES = ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER', 'KEYPOOL_DATA_DIR', 'LOG_LEVEL'];

const NULL_PLUGIN = `'use strict';
// The floor: one PDK call per phase (kong-pdk 0.6.0 leaks an event for a phase with none), no work.
class Plugin {
  constructor(config) { this.config = config; }
  async access(kong) { await kong.request.get_headers(); }
  async log(kong) { await kong.ctx.shared.get('keypool_decision'); }
}
module.exports = { Plugin, Schema: [{ provider: { type: 'string' } }], Version: '0.0.0', Priority: 1000 };
`;

const UPSTREAM = {
  status: 200,
  headers: {
    'content-type': 'application/json',
    'x-ratelimit-limit-requests': '10000',
    'x-ratelimit-remaining-requests': '9999',
    'x-ratelimit-reset-requests': '6ms',
    'x-ratelimit-limit-tokens': '2000000',
    'x-ratelimit-remaining-tokens': '1999950',
    'x-ratelimit-reset-tokens': '1ms',
  },
};

/** Seeds an embedded store in `dataDir` (two openai accounts without limits) and issues a client key. */
async function issueKey(dataDir: string): Promise<string> {
  const saved = Object.fromEntries(RUNTIME_ENV_NAMES.map((n) => [n, process.env[n]]));
  for (const name of RUNTIME_ENV_NAMES) delete process.env[name];
  try {
    // No demo seed (its accounts are rate limited): the same pool, mapping and allowlist as bench:extproc.
    const runtime = await openRuntime({ config: { dataDir, logLevel: 'silent', demoSeed: false } });
    try {
      const repo = runtime.repository;
      await repo.settings.set('enabled', true, 'bench');
      await repo.mappings.create({ pattern: 'kp_', matchType: 'prefix', priority: 3, tenantId: 'acme', tenantName: 'Acme' }, 'bench');
      for (let i = 0; i < 2; i++) await repo.accounts.create({ providerSlug: 'openai', name: `bench-${i}`, apiKey: `sk-bench-${i}-${'x'.repeat(40)}` }, 'bench');
      return (await repo.keys.create({ name: 'bench-kong', allowedIps: ['203.0.113.0/24', '10.0.0.0/8'] }, 'bench')).plaintextKey;
    } finally {
      await runtime.stop();
    }
  } finally {
    for (const [name, value] of Object.entries(saved)) if (value !== undefined) process.env[name] = value;
  }
}

interface Case {
  readonly name: string;
  readonly server: PluginServer;
  readonly rpc: KongRpcClient;
  readonly instance: number;
  readonly headers: Record<string, string>;
}

interface CaseResult {
  accessCalls: string[];
  logCalls: string[];
  access: Percentiles;
  log: Percentiles;
  serverCpuUsPerRequest: number;
  decision: unknown;
}

async function runOnce(c: Case): Promise<{ access: number; log: number; kong: KongRequest; accessCalls: string[]; logCalls: string[] }> {
  const kong = new KongRequest(c.headers);
  kong.upstream = UPSTREAM;
  let t = performance.now();
  const accessCalls = await runPhase(c.rpc, c.instance, 'access', kong.answer);
  const access = (performance.now() - t) * 1000;
  t = performance.now();
  const logCalls = await runPhase(c.rpc, c.instance, 'log', kong.answer);
  return { access, log: (performance.now() - t) * 1000, kong, accessCalls, logCalls };
}

async function measure(cases: readonly Case[]): Promise<Map<string, CaseResult>> {
  const samples = new Map(cases.map((c) => [c.name, { access: [] as number[], log: [] as number[], cpuUs: 0, n: 0, last: null as Awaited<ReturnType<typeof runOnce>> | null }]));
  for (const c of cases) for (let i = 0; i < 500; i++) await runOnce(c); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const s = samples.get(c.name)!;
      const cpu0 = procCpuUs(c.server.pid);
      for (let i = 0; i < REQUESTS; i++) {
        const one = await runOnce(c);
        s.access.push(one.access);
        s.log.push(one.log);
        s.last = one;
      }
      s.cpuUs += procCpuUs(c.server.pid) - cpu0;
      s.n += REQUESTS;
    }
  }
  return new Map(
    [...samples].map(([name, s]) => [
      name,
      {
        accessCalls: s.last!.accessCalls,
        logCalls: s.last!.logCalls,
        access: percentiles(Float64Array.from(s.access)),
        log: percentiles(Float64Array.from(s.log)),
        serverCpuUsPerRequest: s.cpuUs / s.n,
        decision: s.last!.kong.shared.get(DECISION_KEY),
      },
    ]),
  );
}

async function main(): Promise<void> {
  const pinnedCpus = pinSelf(CPUS.load);
  const root = mkdtempSync(join(tmpdir(), 'keypool-bench-kong-'));
  const servers: PluginServer[] = [];
  const clients: KongRpcClient[] = [];
  try {
    const dataDir = join(root, 'data');
    const clientKey = await issueKey(dataDir);
    const nullDir = join(root, 'null-plugins');
    mkdirSync(nullDir);
    writeFileSync(join(nullDir, 'nullplugin.cjs'), NULL_PLUGIN);
    const runtimeEnv = { KEYPOOL_DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '', KEYPOOL_ENCRYPTION_KEYS: '', KEYPOOL_KEY_PEPPER: '', LOG_LEVEL: 'info' };
    const start = async (pluginsDir: string, prefix: string) => {
      mkdirSync(prefix);
      const server = await startPluginServer({ pluginsDir, prefix, env: runtimeEnv });
      servers.push(server);
      const bin = taskset();
      if (bin && pinnedCpus) execFileSync(bin, ['-a', '-p', '-c', CPUS.sut, String(server.pid)], { stdio: 'ignore' });
      const rpc = new KongRpcClient(server.socketPath);
      clients.push(rpc);
      return { server, rpc };
    };
    const kp = await start(join(REPO_ROOT, 'kong', 'plugins'), join(root, 'prefix-keypool'));
    const nul = await start(nullDir, join(root, 'prefix-null'));
    const kpInstance = (await startInstance(kp.rpc, 'keypool', { provider: 'openai', strategy: null, key_headers: null })).Id;
    const nullInstance = (await startInstance(nul.rpc, 'nullplugin', { provider: 'openai' })).Id;

    // The runtime opens on the first request (PGlite boots in seconds): wait for the first allow.
    const allowed: Case = { name: 'keypool allowed', server: kp.server, rpc: kp.rpc, instance: kpInstance, headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' } };
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { kong } = await runOnce(allowed);
      const record = kong.shared.get(DECISION_KEY) as { action?: string } | undefined;
      if (record?.action === 'allow') break;
      if (Date.now() > deadline) throw new Error(`keypool never allowed: ${JSON.stringify(record)}\n${kp.server.output()}`);
      await sleep(500);
    }
    const cases: Case[] = [
      { name: 'null plugin', server: nul.server, rpc: nul.rpc, instance: nullInstance, headers: allowed.headers },
      allowed,
      { name: 'keypool denied (unknown key)', server: kp.server, rpc: kp.rpc, instance: kpInstance, headers: { authorization: `Bearer kp_${'x'.repeat(40)}` } },
    ];
    const results = await measure(cases);
    const allowRecord = results.get('keypool allowed')!.decision as { action?: string };
    const denyRecord = results.get('keypool denied (unknown key)')!.decision as { action?: string; code?: string };
    if (allowRecord?.action !== 'allow' || denyRecord?.action !== 'deny') throw new Error(`unexpected decisions: ${JSON.stringify([allowRecord, denyRecord])}`);

    const nullResult = results.get('null plugin')!;
    const rows = [...results].map(([name, r]) => [
      name,
      String(r.accessCalls.length),
      `${round1(r.access.p50)} / ${round1(r.access.p99)}`,
      String(r.logCalls.length),
      `${round1(r.log.p50)} / ${round1(r.log.p99)}`,
      round1(r.access.p50 + r.log.p50),
      round1(r.serverCpuUsPerRequest),
      name === 'null plugin' ? '-' : `x${round1(r.serverCpuUsPerRequest / nullResult.serverCpuUsPerRequest)}`,
    ]);
    const table = markdownTable(
      ['Kong JS plugin server', 'access PDK calls', 'access p50 / p99 us', 'log PDK calls', 'log p50 / p99 us', 'access + log p50 us', 'plugin server CPU us/req', 'CPU vs null plugin'],
      rows,
    );
    console.log(`\n${table}`);
    for (const [name, r] of results) console.log(`${name}: access ${r.accessCalls.join(', ')} | log ${r.logCalls.join(', ')}`);
    console.log('Each PDK call is one socket round trip (plugin.Step*), plus plugin.HandleEvent per phase. Times include this process standing in for Kong (MessagePack over the unix socket).');
    writeResults('kong', {
      setup: { pinned: pinnedCpus, requestsPerRound: REQUESTS, rounds: ROUNDS, logLevel: 'info' },
      results: Object.fromEntries(results),
      table,
    });
  } finally {
    for (const rpc of clients) rpc.close();
    for (const server of servers) await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
