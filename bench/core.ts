// bench:core — the decision core in-process: ns per decision across config sizes, priority lookup at 10k mappings,
// and the compile (reload) time of a 10k-mapping snapshot. A benchmark, never part of `npm test`.
// Prints a table and writes bench/results/core.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKeyDigester } from '../src/core/apikey.js';
import { compilePriority } from '../src/core/priority.js';
import type { MatchType, RequestView } from '../src/core/types.js';
import { Engine } from '../src/engine.js';
import { createLogger } from '../src/log.js';
import type { AccountRow, ConfigData, MappingRow, StoredAccount, StoredKey, SystemKeyRow } from '../src/ports.js';
import { Keyring, encryptSecret } from '../src/secrets/keyring.js';
import { parsePepper, generatePepperSpec } from '../src/secrets/pepper.js';
import { compileSnapshot, type CompiledSnapshot } from '../src/snapshot/compile.js';
import { MemoryRateStateStore } from '../src/stores/memory-state.js';
import { WriteBuffer } from '../src/stores/write-buffer.js';

const NOW_MS = Date.UTC(2026, 10, 22);
const EPOCH = new Date(NOW_MS - 86_400_000);
const pepper = parsePepper(generatePepperSpec());
const keyring = Keyring.parse(Keyring.generateSpec());
const digest = createKeyDigester(pepper);

interface Scenario {
  readonly keys: number;
  readonly mappings: number;
  readonly accounts: number;
}

const SCENARIOS: readonly Scenario[] = [
  { keys: 10, mappings: 10, accounts: 2 },
  { keys: 10_000, mappings: 10, accounts: 2 },
  { keys: 100_000, mappings: 10, accounts: 2 },
  { keys: 10, mappings: 10_000, accounts: 2 },
  { keys: 10, mappings: 10, accounts: 1_000 },
  { keys: 100_000, mappings: 10_000, accounts: 1_000 },
];

function clientKey(index: number): string {
  return `kp_${index.toString(36).padStart(10, '0')}${'A'.repeat(30)}`;
}

function keyRow(index: number): StoredKey {
  const key = clientKey(index);
  const row: SystemKeyRow = {
    id: `00000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`,
    name: `key-${index}`,
    tenantId: `tenant-${index % 50}`,
    keyPrefix: key.slice(0, 11),
    status: 'active',
    expiresAt: null,
    allowedIps: index % 2 === 0 ? ['10.0.0.0/8', '2001:db8::/32'] : [],
    rotateAfterDays: null,
    lastRotatedAt: null,
    previousKeyExpiresAt: null,
    lastUsedAt: null,
    createdAt: EPOCH,
    updatedAt: EPOCH,
  };
  return { ...row, keyHash: digest(key), previousKeyHash: null };
}

const MATCH_TYPES: readonly MatchType[] = ['exact', 'prefix', 'suffix', 'contains'];

function mappingRow(index: number): MappingRow {
  const matchType = MATCH_TYPES[index % MATCH_TYPES.length]!;
  const pattern =
    matchType === 'exact' ? clientKey(index) : matchType === 'prefix' ? `kp_${index.toString(36).padStart(6, '0')}` : `Z${index.toString(36)}Q`;
  return {
    id: `10000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`,
    pattern,
    matchType,
    priority: index % 8,
    tenantId: null,
    tenantName: null,
    tenantType: null,
    description: null,
    enabled: true,
    createdAt: new Date(EPOCH.getTime() + index),
  };
}

function accountRow(index: number): StoredAccount {
  const id = `20000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`;
  const row: AccountRow = {
    id,
    providerId: 'p-openai',
    providerSlug: 'openai',
    name: `acct-${index}`,
    keyLast4: '0000',
    keyVersion: keyring.currentVersion,
    weight: 1,
    tier: 0,
    rpmLimit: null,
    tpmLimit: null,
    maxConcurrency: null,
    status: 'active',
    disabledReason: null,
    tags: {},
    createdAt: EPOCH,
    updatedAt: EPOCH,
  };
  return { ...row, encryptedKey: encryptSecret(keyring, id, `sk-bench-${index}`).ciphertext };
}

function configData(scenario: Scenario): ConfigData {
  return {
    readAt: new Date(NOW_MS),
    configVersion: 1,
    providers: [
      { id: 'p-openai', slug: 'openai', displayName: 'OpenAI', authStyle: 'bearer', rateLimitDialect: 'openai', defaultStrategy: 'round-robin' },
    ],
    accounts: Array.from({ length: scenario.accounts }, (_, i) => accountRow(i)),
    keys: Array.from({ length: scenario.keys }, (_, i) => keyRow(i)),
    mappings: Array.from({ length: scenario.mappings }, (_, i) => mappingRow(i)),
    settings: { enabled: true, defaultPriority: 7, cacheTtlSec: 300 },
  };
}

function percentile(sortedNs: Float64Array, p: number): number {
  return sortedNs[Math.min(sortedNs.length - 1, Math.floor((p / 100) * sortedNs.length))]!;
}

/** Runs `iterations` timed calls (after warm-up) and returns p50/p99 in ns. */
async function measure(iterations: number, call: (i: number) => unknown): Promise<{ p50: number; p99: number; mean: number }> {
  for (let i = 0; i < Math.min(iterations, 20_000); i += 1) await call(i);
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i += 1) {
    const started = process.hrtime.bigint();
    await call(i);
    samples[i] = Number(process.hrtime.bigint() - started);
  }
  const mean = samples.reduce((a, b) => a + b, 0) / iterations;
  samples.sort();
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), mean };
}

async function decisionBench(scenario: Scenario, snapshot: CompiledSnapshot) {
  const logger = createLogger('silent');
  const writes = new WriteBuffer({
    target: { appendAudit: async () => {}, markAccountInvalid: async () => {}, touchKeys: async () => {}, addUsage: async () => {} },
    maxPending: 1_000_000,
    flushIntervalMs: 60_000,
  });
  const engine = new Engine({
    snapshots: { current: () => snapshot },
    state: new MemoryRateStateStore(),
    writes,
    clock: { nowMs: () => NOW_MS },
    logger,
    keyHeaders: ['authorization', 'x-api-key', 'api-key'],
    leaseMs: 60_000,
    defaultCooldownMs: 30_000,
  });
  // Keys with an allowlist (even index) are presented from inside it, so every decision is an allow.
  const views: RequestView[] = Array.from({ length: Math.min(scenario.keys, 1024) }, (_, i) => ({
    headers: { authorization: `Bearer ${clientKey(i)}`, 'content-type': 'application/json' },
    clientAddress: '10.1.2.3:5000',
    provider: 'openai',
  }));
  const responseHeaders = { 'x-ratelimit-remaining-requests': '499', 'x-ratelimit-reset-requests': '120ms' };
  let denied = 0;
  const decide = await measure(200_000, async (i) => {
    const outcome = await engine.decide(views[i % views.length]!);
    if (outcome.ticket) engine.release(outcome.ticket);
    else denied += 1;
  });
  if (denied > 0) throw new Error(`benchmark setup is wrong: ${denied} denials`);
  const roundTrip = await measure(200_000, async (i) => {
    const outcome = await engine.decide(views[i % views.length]!);
    engine.observe(outcome.ticket!, 200, responseHeaders);
    engine.release(outcome.ticket!);
  });
  await writes.stop();
  return { decide, roundTrip };
}

async function main(): Promise<void> {
  const rows: Array<Record<string, number | string>> = [];
  for (const scenario of SCENARIOS) {
    const data = configData(scenario);
    const compileStarted = process.hrtime.bigint();
    const snapshot = compileSnapshot(data, { pepper, keyring }, 1, NOW_MS);
    const compileMs = Number(process.hrtime.bigint() - compileStarted) / 1e6;
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
  const matcher = compilePriority(inputs, { enabled: true, defaultPriority: 7, cacheTtlSec: 300 });
  const priorityCompileMs = Number(process.hrtime.bigint() - compileStarted) / 1e6;
  const probes = Array.from({ length: 1024 }, (_, i) => clientKey(i * 7));
  let sink = 0;
  const lookupStarted = process.hrtime.bigint();
  const lookups = 2_000_000;
  for (let i = 0; i < lookups; i += 1) sink += matcher.resolve(probes[i & 1023]!).priority;
  const priorityNs = Number(process.hrtime.bigint() - lookupStarted) / lookups;

  // Reload of a 10k-mapping snapshot (compile only: what a change-feed reload costs besides the SELECTs).
  const reloadData = configData({ keys: 10, mappings: 10_000, accounts: 2 });
  const reload = await measure(30, () => compileSnapshot(reloadData, { pepper, keyring }, 2, NOW_MS));

  console.table(rows);
  console.log(`priority lookup at 10k mappings: ${priorityNs.toFixed(0)} ns/lookup (compile ${priorityCompileMs.toFixed(1)} ms; checksum ${sink})`);
  console.log(`snapshot reload with 10k mappings: p50 ${(reload.p50 / 1e6).toFixed(2)} ms, p99 ${(reload.p99 / 1e6).toFixed(2)} ms`);

  const results = {
    name: 'core',
    node: process.version,
    at: new Date().toISOString(),
    decisions: rows,
    priorityLookupNsAt10kMappings: Math.round(priorityNs),
    reload10kMappingsMs: { p50: reload.p50 / 1e6, p99: reload.p99 / 1e6 },
  };
  const out = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'core.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`written ${out}`);
}

await main();
