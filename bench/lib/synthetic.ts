// Synthetic configuration for the in-process benches (bench:core, bench:scale): client keys, priority mappings and
// pooled accounts at any size, compiled with the same code the service runs. Secrets are generated per process.
import { createKeyDigester } from '../../src/core/apikey.js';
import type { MatchType, RequestView } from '../../src/core/types.js';
import { Engine } from '../../src/engine.js';
import { createLogger } from '../../src/log.js';
import { Keyring, encryptSecret } from '../../src/secrets/keyring.js';
import { parsePepper, generatePepperSpec } from '../../src/secrets/pepper.js';
import type { CompiledSnapshot } from '../../src/snapshot/compile.js';
import { MemoryRateStateStore } from '../../src/stores/memory-state.js';
import { WriteBuffer } from '../../src/stores/write-buffer.js';
import type { AccountRow, StoredAccount } from '../../src/catalog/accounts/rows.js';
import type { ConfigData } from '../../src/catalog/config-data.js';
import type { StoredKey, SystemKeyRow } from '../../src/catalog/keys/rows.js';
import type { MappingRow } from '../../src/catalog/mappings/rows.js';

export const NOW_MS = Date.UTC(2026, 10, 22);
const EPOCH = new Date(NOW_MS - 86_400_000);
export const pepper = parsePepper(generatePepperSpec());
export const keyring = Keyring.parse(Keyring.generateSpec());
const digest = createKeyDigester(pepper);

export interface Scenario {
  readonly keys: number;
  readonly mappings: number;
  readonly accounts: number;
}

export function clientKey(index: number): string {
  return `kp_${index.toString(36).padStart(10, '0')}${'A'.repeat(30)}`;
}

export function keyRow(index: number): StoredKey {
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
    rpmLimit: null,
    rpdLimit: null,
    lastRotatedAt: null,
    previousKeyExpiresAt: null,
    lastUsedAt: null,
    createdAt: EPOCH,
    updatedAt: EPOCH,
  };
  return { ...row, keyHash: digest(key), previousKeyHash: null };
}

const MATCH_TYPES: readonly MatchType[] = ['exact', 'prefix', 'suffix', 'contains'];

export function mappingRow(index: number): MappingRow {
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
    window: null,
    createdAt: new Date(EPOCH.getTime() + index),
  };
}

export function accountRow(index: number): StoredAccount {
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
    models: [],
    scope: null,
    createdAt: EPOCH,
    updatedAt: EPOCH,
  };
  return { ...row, encryptedKey: encryptSecret(keyring, id, `sk-bench-${index}`).ciphertext };
}

export function configData(scenario: Scenario): ConfigData {
  return {
    readAt: new Date(NOW_MS),
    configVersion: 1,
    providers: [
      { id: 'p-openai', slug: 'openai', displayName: 'OpenAI', authStyle: 'bearer', rateLimitDialect: 'openai', defaultStrategy: 'round-robin', perModelState: false },
    ],
    accounts: Array.from({ length: scenario.accounts }, (_, i) => accountRow(i)),
    keys: Array.from({ length: scenario.keys }, (_, i) => keyRow(i)),
    mappings: Array.from({ length: scenario.mappings }, (_, i) => mappingRow(i)),
    settings: { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 },
  };
}

/** An engine over a fixed snapshot, in-memory rate state, a write buffer that never flushes, and a fixed clock. */
export function benchEngine(snapshot: CompiledSnapshot): { engine: Engine; writes: WriteBuffer } {
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
    logger: createLogger('silent'),
    keyHeaders: ['authorization', 'x-api-key', 'api-key'],
    leaseMs: 60_000,
    defaultCooldownMs: 30_000,
  });
  return { engine, writes };
}

/**
 * Requests for the first min(keys, 1024) keys. Keys with an allowlist (even index) are presented from inside it,
 * so every decision is an allow.
 */
export function allowedViews(keys: number): RequestView[] {
  return Array.from({ length: Math.min(keys, 1024) }, (_, i) => ({
    headers: { authorization: `Bearer ${clientKey(i)}`, 'content-type': 'application/json' },
    clientAddress: '10.1.2.3:5000',
    provider: 'openai',
  }));
}

/** OpenAI-style rate-limit headers of a successful upstream answer. */
export const OPENAI_OK_HEADERS = { 'x-ratelimit-remaining-requests': '499', 'x-ratelimit-reset-requests': '120ms' } as const;

export function percentileOfSorted(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `iterations` timed calls (after warm-up) and returns p50/p99/mean in ns. */
export async function measure(iterations: number, call: (i: number) => unknown): Promise<{ p50: number; p99: number; mean: number }> {
  for (let i = 0; i < Math.min(iterations, 20_000); i += 1) await call(i);
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i += 1) {
    const started = process.hrtime.bigint();
    await call(i);
    samples[i] = Number(process.hrtime.bigint() - started);
  }
  const mean = samples.reduce((a, b) => a + b, 0) / iterations;
  samples.sort();
  return { p50: percentileOfSorted(samples, 50), p99: percentileOfSorted(samples, 99), mean };
}
