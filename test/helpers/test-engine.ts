// The one engine adapter tests drive: the real Engine over a static snapshot (compiled by the real snapshot compiler
// from catalog rows) and the real MemoryRateStateStore. Only ports are faked: a frozen clock, durable writes that
// are recorded instead of written, and a rate-state port that can delay admissions, fail them (pool `broken`) or
// hold a commit until the test lets it through. Every call an adapter makes is recorded at the DecisionEngine port.
//
// No vitest import: the Kong plugin-server tests compile this file into the plugin tree (test/kong/test-runtime.ts).
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { digestKey } from '../../src/core/apikey.js';
import { observeResponse } from '../../src/core/response.js';
import type { AuthStyle, HeaderBag, RateLimitDialect, RequestView } from '../../src/core/types.js';
import { Engine } from '../../src/engine.js';
import type { Logger } from '../../src/log.js';
import type {
  AdmitRequest,
  AdmitResult,
  Clock,
  DecisionEngine,
  DurableWrites,
  LearnedTarget,
  ObserveOptions,
  RateStateStore,
  RequestOutcome,
  Ticket,
  DecideOptions,
} from '../../src/ports.js';
import { Keyring } from '../../src/secrets/keyring.js';
import { compileSnapshot, type CompiledSnapshot } from '../../src/snapshot/compile.js';
import { MemoryRateStateStore } from '../../src/stores/memory-state.js';
import { WriteBuffer } from '../../src/stores/write-buffer.js';
import type { StoredAccount } from '../../src/catalog/accounts/rows.js';
import type { AuditEntry } from '../../src/catalog/audit/rows.js';
import type { TokenUsageBucket, UsageBucket } from '../../src/catalog/usage/rows.js';
import type { TokenUsage } from '../../src/core/usage.js';
import type { ConfigData } from '../../src/catalog/config-data.js';
import type { StoredKey } from '../../src/catalog/keys/rows.js';
import type { ProviderRow } from '../../src/catalog/providers/rows.js';
import type { Observation } from '../../src/core/types.js';

/** Client keys in the snapshot. Anything else is unknown (invalid_api_key). */
export const TEST_KEYS = {
  live: 'kp_live_client',
  revoked: 'kp_revoked',
  /** Expired a day before the frozen clock. */
  expired: 'kp_expired',
  /** Allowed only from 10.0.0.0/8. */
  office: 'kp_office',
} as const;

/**
 * Pools besides the ones given in options.pools: `busy` (its one account cooling down for 7 s: 429 pool_exhausted,
 * retry-after 7), `broken` (the rate-state port rejects its admissions: broken infrastructure) and `unsafe` (its
 * upstream secret holds CR/LF, which no header may carry).
 */
export const SPECIAL_POOLS = { busy: 'busy', broken: 'broken', unsafe: 'unsafe' } as const;

export const DEFAULT_POOLS: Readonly<Record<string, readonly string[]>> = {
  openai: ['sk-openai-a', 'sk-openai-b'],
  anthropic: ['sk-ant-a', 'sk-ant-b'],
};

/** The clock every test engine reads (frozen: cooldowns, expiries and leases never move on their own). */
export const TEST_NOW_MS = Date.parse('2030-01-01T00:00:00Z');
const TENANT = 'acme';

export interface TestEngineOptions {
  /** Upstream secrets per provider slug, in rotation order (round-robin). */
  readonly pools?: Readonly<Record<string, readonly string[]>>;
  /** Every account's max_concurrency (null = unlimited, the default). */
  readonly maxConcurrency?: number | null;
  /** `models` of accounts by name (`openai-a`, `openai-b`, ...); absent = any model. */
  readonly accountModels?: Readonly<Record<string, readonly string[]>>;
  /** `scope` of accounts by name; absent = the account is its own scope. */
  readonly accountScopes?: Readonly<Record<string, string>>;
  /** Provider slugs whose `per_model_state` switch is on. */
  readonly perModelState?: readonly string[];
  /** Priority every key resolves to (priority mappings off). Default 1. */
  readonly defaultPriority?: number;
  /** In-flight lease; renewals every third of it. Default 30 s. */
  readonly leaseMs?: number;
  /** Client headers that may carry the key. Default authorization, x-api-key. */
  readonly keyHeaders?: readonly string[];
  readonly logger?: Logger;
}

/** What an adapter passed to observe(). */
export interface Observed {
  readonly ticket: Ticket;
  readonly status: number;
  readonly headers: HeaderBag;
  readonly options: ObserveOptions;
}

export interface TestEngineStats {
  decided: number;
  allowed: number;
  /** Observations of the provider's own answers. */
  observed: number;
  /** Observations of answers the gateway produced (left out of account state by the engine). */
  gatewayReplies: number;
  /** Distinct leases handed back (release() or observe with release). */
  released: number;
  /** Allowed leases not handed back yet. */
  inFlight: number;
}

/** Bound on the recorded views/observations (soak tests run 100,000 requests). */
const KEEP_RECORDS = 10_000;

export class TestEngine implements DecisionEngine {
  /** Whether the snapshot source has a snapshot (false: the engine answers keypool_unavailable, not ready). */
  ready = true;
  readonly views: RequestView[] = [];
  readonly observed: Observed[] = [];
  /** Every release request, in order (duplicates included). */
  readonly released: Ticket[] = [];
  readonly abandoned: Ticket[] = [];
  readonly issued: Ticket[] = [];
  readonly renewed: Ticket[] = [];
  /** Every recordUsage call, in order. */
  readonly usage: Array<{ readonly ticket: Ticket; readonly usage: TokenUsage; readonly model: string | null }> = [];
  readonly stats: TestEngineStats = { decided: 0, allowed: 0, observed: 0, gatewayReplies: 0, released: 0, inFlight: 0 };
  /** Durable writes the engine made (recorded by the DurableWrites port). */
  readonly writes: RecordingWrites;
  private readonly open = new Set<string>();

  constructor(
    readonly engine: Engine,
    readonly state: GatedRateState,
    writes: RecordingWrites,
    private readonly snapshots: SwappableSnapshot,
    private readonly buffer: WriteBuffer,
  ) {
    this.writes = writes;
  }

  /**
   * Whether issued tickets hold a concurrency slot to the response's end: swaps in a snapshot whose accounts have
   * (or lack) a max_concurrency, as a configuration reload would. Account ids and rate state stay.
   */
  get holdsConcurrencySlot(): boolean {
    return this.snapshots.maxConcurrency !== null;
  }

  set holdsConcurrencySlot(value: boolean) {
    this.snapshots.recompile(value ? 10 : null);
  }

  /** Every admission of every pool rejects (broken infrastructure) while true. */
  get failAdmissions(): boolean {
    return this.state.failAdmissions;
  }

  set failAdmissions(value: boolean) {
    this.state.failAdmissions = value;
  }

  /** Every account of `pool` answers as if its provider had just said 429 with retry-after (real observation). */
  async coolDown(pool: string, retryAfterSec: number): Promise<void> {
    const observation = observeResponse('openai', 429, { 'retry-after': String(retryAfterSec) }, TEST_NOW_MS, 60_000);
    for (const accountId of this.state.accountsOf(pool)) await this.state.inner.observe(pool, accountId, observation, TEST_NOW_MS);
  }

  /** Forgets cooldowns and circuits of every pool but `busy` (as re-enabling the accounts would). */
  async resetState(): Promise<void> {
    for (const pool of this.state.pools()) {
      if (pool === SPECIAL_POOLS.busy) continue;
      for (const accountId of this.state.accountsOf(pool)) await this.state.inner.resetAccount(pool, accountId);
    }
  }

  /** Delay before an admission settles (cancel-while-deciding, deadline tests). */
  get decideDelayMs(): number {
    return this.state.admitDelayMs;
  }

  set decideDelayMs(value: number) {
    this.state.admitDelayMs = value;
  }

  /**
   * When an array: a state-changing observation's commit to the rate state settles only when the test calls the
   * resolver pushed here (the stream must not answer before). Null: commits settle at once.
   */
  get pendingCommits(): Array<() => void> | null {
    return this.state.pendingCommits;
  }

  set pendingCommits(value: Array<() => void> | null) {
    this.state.pendingCommits = value;
  }

  get renewIntervalMs(): number {
    return this.engine.renewIntervalMs;
  }

  isReady(): boolean {
    return this.engine.isReady();
  }

  /** When > 0: each decision first tells the adapter it waits in the admission queue for up to this long. */
  queuedForMs = 0;

  needsPath(view: RequestView): boolean {
    return this.engine.needsPath(view);
  }

  needsBody(view: RequestView): boolean {
    return this.engine.needsBody(view);
  }

  clientCredentialHeaders(view: RequestView): readonly string[] {
    return this.engine.clientCredentialHeaders(view);
  }

  async decide(view: RequestView, options: DecideOptions = {}): Promise<RequestOutcome> {
    this.stats.decided += 1;
    if (this.views.length < KEEP_RECORDS) this.views.push(view);
    if (this.queuedForMs > 0) options.onQueued?.(this.queuedForMs);
    const outcome = await this.engine.decide(view, options);
    if (outcome.ticket !== null) {
      this.stats.allowed += 1;
      if (this.issued.length < KEEP_RECORDS) this.issued.push(outcome.ticket);
      this.open.add(outcome.ticket.leaseId);
      this.stats.inFlight = this.open.size;
    }
    return outcome;
  }

  observe(ticket: Ticket, status: number, headers: HeaderBag, options: ObserveOptions = {}): Promise<void> | null {
    if (this.observed.length < KEEP_RECORDS) this.observed.push({ ticket, status, headers, options });
    if (options.origin === 'gateway') this.stats.gatewayReplies += 1;
    else this.stats.observed += 1;
    if (options.release) this.countRelease(ticket);
    return this.engine.observe(ticket, status, headers, options);
  }

  recordUsage(ticket: Ticket, usage: TokenUsage, model: string | null = null): void {
    if (this.usage.length < KEEP_RECORDS) this.usage.push({ ticket, usage, model });
    this.engine.recordUsage(ticket, usage, model);
  }

  /** Writes what the engine queued (the buffer is never started) into `writes`. */
  flushWrites(): Promise<void> {
    return this.buffer.flush();
  }

  renew(ticket: Ticket): void {
    this.renewed.push(ticket);
    this.engine.renew(ticket);
  }

  release(ticket: Ticket): void {
    this.countRelease(ticket);
    this.engine.release(ticket);
  }

  /** Counted as a release too (it returns the slot); `abandoned` lists the tickets given up before forwarding. */
  abandon(ticket: Ticket): void {
    this.countRelease(ticket);
    this.abandoned.push(ticket);
    this.engine.abandon(ticket);
  }

  /** How many times each issued lease was released, by issue order (`lease-1` is the first lease issued). */
  releaseCounts(): Record<string, number> {
    const ordinal = new Map(this.issued.map((t, index) => [t.leaseId, `lease-${index + 1}`]));
    const counts: Record<string, number> = {};
    for (const name of ordinal.values()) counts[name] = 0;
    for (const t of this.released) {
      const name = ordinal.get(t.leaseId) ?? t.leaseId;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  }

  /** In-flight slots the real rate state holds for a pool's accounts now. */
  async inFlight(pool: string): Promise<number> {
    const views = await this.state.inspect(pool, this.state.accountsOf(pool), TEST_NOW_MS);
    return views.reduce((sum, view) => sum + view.inFlight, 0);
  }

  private countRelease(ticket: Ticket): void {
    if (this.released.length < KEEP_RECORDS) this.released.push(ticket);
    if (!this.open.delete(ticket.leaseId)) return;
    this.stats.released += 1;
    this.stats.inFlight = this.open.size;
  }
}

/** The rate-state port: the real memory store behind test controls (delay, failure of pool `broken`, held commits). */
export class GatedRateState implements RateStateStore {
  admitDelayMs = 0;
  failAdmissions = false;
  pendingCommits: Array<() => void> | null = null;
  private readonly accountsByPool = new Map<string, string[]>();

  constructor(readonly inner: MemoryRateStateStore) {}

  setPools(accountsByPool: ReadonlyMap<string, readonly string[]>): void {
    for (const [pool, ids] of accountsByPool) this.accountsByPool.set(pool, [...ids]);
  }

  pools(): string[] {
    return [...this.accountsByPool.keys()];
  }

  accountsOf(pool: string): string[] {
    return this.accountsByPool.get(pool) ?? [];
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    if (this.admitDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.admitDelayMs));
    if (this.failAdmissions || request.pool === SPECIAL_POOLS.broken) throw new Error('state store unreachable');
    return this.inner.admit(request);
  }

  release(pool: string, accountId: string, leaseId: string): void {
    this.inner.release(pool, accountId, leaseId);
  }

  observe(
    pool: string,
    accountId: string,
    observation: Observation,
    nowMs: number,
    releaseLeaseId?: string | null,
    target?: LearnedTarget,
  ): Promise<void> {
    const committed = this.inner.observe(pool, accountId, observation, nowMs, releaseLeaseId, target);
    const pending = this.pendingCommits;
    if (pending === null) return committed;
    return committed.then(() => new Promise<void>((resolve) => pending.push(resolve)));
  }

  renew(pool: string, accountId: string, leaseId: string, leaseMs: number, nowMs: number): void {
    this.inner.renew(pool, accountId, leaseId, leaseMs, nowMs);
  }

  inspect(pool: string, accountIds: readonly string[], nowMs: number, scopes?: ReadonlyMap<string, string>) {
    return this.inner.inspect(pool, accountIds, nowMs, scopes);
  }

  resetAccount(pool: string, accountId: string): Promise<void> {
    return this.inner.resetAccount(pool, accountId);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The durable-writes port: records instead of writing. */
export class RecordingWrites implements DurableWrites {
  readonly audit: AuditEntry[] = [];
  readonly invalidated: Array<{ accountId: string; reason: string; as: 'invalid' | 'disabled' }> = [];
  readonly usage: UsageBucket[] = [];
  readonly tokens: TokenUsageBucket[] = [];

  async appendAudit(entries: readonly AuditEntry[]): Promise<void> {
    this.audit.push(...entries.slice(0, KEEP_RECORDS - this.audit.length));
  }

  async markAccountInvalid(accountId: string, reason: string, _actor: string, as: 'invalid' | 'disabled' = 'invalid'): Promise<void> {
    this.invalidated.push({ accountId, reason, as });
  }

  async touchKeys(): Promise<void> {}

  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    this.usage.push(...buckets.slice(0, KEEP_RECORDS - this.usage.length));
  }

  async addTokenUsage(buckets: readonly TokenUsageBucket[]): Promise<void> {
    this.tokens.push(...buckets.slice(0, KEEP_RECORDS - this.tokens.length));
  }
}

const frozenClock: Clock = { nowMs: () => TEST_NOW_MS };

/** The snapshot-source port: a static compiled snapshot, swapped (same rows, other limits) or withheld on request. */
class SwappableSnapshot {
  current: CompiledSnapshot;

  constructor(
    private readonly options: TestEngineOptions,
    private readonly secrets: { keyring: Keyring; pepper: Uint8Array },
    public maxConcurrency: number | null,
  ) {
    this.current = this.compile();
  }

  recompile(maxConcurrency: number | null): void {
    this.maxConcurrency = maxConcurrency;
    this.current = this.compile();
  }

  private compile(): CompiledSnapshot {
    const data = configData({ ...this.options, maxConcurrency: this.maxConcurrency }, this.secrets.keyring, this.secrets.pepper);
    const snapshot = compileSnapshot(data, this.secrets, 1, TEST_NOW_MS);
    if (snapshot.warnings.length > 0) throw new Error(`test snapshot: ${JSON.stringify(snapshot.warnings)}`);
    return snapshot;
  }
}

/** Builds the engine; the `busy` pool's account is already cooling down (a real 429 with retry-after: 7). */
export async function createTestEngine(options: TestEngineOptions = {}): Promise<TestEngine> {
  const keyring = Keyring.parse(Keyring.generateSpec('v1'));
  const pepper = new Uint8Array(randomBytes(32));
  const snapshots = new SwappableSnapshot(options, { keyring, pepper }, options.maxConcurrency ?? null);
  const snapshot = snapshots.current;

  const state = new GatedRateState(new MemoryRateStateStore());
  state.setPools(new Map([...snapshot.pools].map(([slug, pool]) => [slug, pool.accounts.map((account) => account.id)])));
  const writes = new RecordingWrites();
  // Never started: nothing is flushed on a timer; the engine only queues into it (flushWrites writes it).
  const buffer = new WriteBuffer({ target: writes, maxPending: 10_000, flushIntervalMs: 60_000 });
  let testEngine: TestEngine | null = null;
  const engine = new Engine({
    snapshots: { current: () => (testEngine === null || testEngine.ready ? snapshots.current : null) },
    state,
    writes: buffer,
    clock: frozenClock,
    logger: options.logger ?? pino({ level: 'silent' }),
    keyHeaders: options.keyHeaders ?? ['authorization', 'x-api-key'],
    leaseMs: options.leaseMs ?? 30_000,
    defaultCooldownMs: 60_000,
    // Held commits (pendingCommits) are let through by the test, not by the engine's bound.
    stateTimeoutMs: 10_000,
  });
  testEngine = new TestEngine(engine, state, writes, snapshots, buffer);

  const busy = snapshot.pools.get(SPECIAL_POOLS.busy)!.accounts[0]!;
  const cooldown = observeResponse('openai', 429, { 'retry-after': '7' }, TEST_NOW_MS, 60_000);
  await state.inner.observe(SPECIAL_POOLS.busy, busy.id, cooldown, TEST_NOW_MS);
  return testEngine;
}

function configData(options: TestEngineOptions, keyring: Keyring, pepper: Uint8Array): ConfigData {
  let seq = 0;
  const uuid = () => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;
  const at = new Date(TEST_NOW_MS);
  const pools: Record<string, readonly string[]> = {
    ...(options.pools ?? DEFAULT_POOLS),
    [SPECIAL_POOLS.busy]: ['sk-busy-a'],
    [SPECIAL_POOLS.broken]: ['sk-broken-a'],
    [SPECIAL_POOLS.unsafe]: ['sk-openai-a\r\nx-evil: 1'],
  };
  // Provider styles by slug (as the seeded catalog has them); every other slug is OpenAI-style.
  const styles: Record<string, readonly [AuthStyle, RateLimitDialect]> = {
    anthropic: ['x-api-key', 'anthropic'],
    gemini: ['x-goog-api-key', 'gemini'],
    'azure-openai': ['api-key', 'azure'],
  };
  const providers: ProviderRow[] = Object.keys(pools).map((slug) => {
    const [authStyle, rateLimitDialect] = styles[slug] ?? ['bearer', 'openai'];
    return { id: `p-${slug}`, slug, displayName: slug, authStyle, rateLimitDialect, defaultStrategy: 'round-robin', perModelState: options.perModelState?.includes(slug) ?? false };
  });
  const accounts: StoredAccount[] = Object.entries(pools).flatMap(([slug, secrets]) =>
    secrets.map((secret, index) => {
      const id = uuid();
      const encrypted = keyring.encrypt(secret, id);
      return {
        id,
        providerId: `p-${slug}`,
        providerSlug: slug,
        // Names sort in rotation order (the catalog orders a pool by tier, then name).
        name: `${slug}-${String.fromCharCode(97 + index)}`,
        keyLast4: '',
        keyVersion: encrypted.keyVersion,
        encryptedKey: encrypted.ciphertext,
        weight: 1,
        tier: 0,
        rpmLimit: null,
        tpmLimit: null,
        maxConcurrency: options.maxConcurrency ?? null,
        status: 'active',
        disabledReason: null,
        tags: {},
        models: options.accountModels?.[`${slug}-${String.fromCharCode(97 + index)}`] ?? [],
        scope: options.accountScopes?.[`${slug}-${String.fromCharCode(97 + index)}`] ?? null,
        createdAt: at,
        updatedAt: at,
      } satisfies StoredAccount;
    }),
  );
  const key = (name: string, plaintext: string, extra: Partial<StoredKey> = {}): StoredKey => ({
    id: uuid(),
    name,
    tenantId: TENANT,
    keyPrefix: plaintext.slice(0, 11),
    status: 'active',
    rpmLimit: null,
    rpdLimit: null,
    expiresAt: null,
    allowedIps: [],
    rotateAfterDays: null,
    lastRotatedAt: null,
    previousKeyExpiresAt: null,
    lastUsedAt: null,
    createdAt: at,
    updatedAt: at,
    keyHash: digestKey(pepper, plaintext),
    previousKeyHash: null,
    ...extra,
  });
  return {
    readAt: at,
    configVersion: 1,
    providers,
    accounts,
    keys: [
      key('live', TEST_KEYS.live),
      key('revoked', TEST_KEYS.revoked, { status: 'revoked' }),
      key('expired', TEST_KEYS.expired, { expiresAt: new Date(TEST_NOW_MS - 86_400_000) }),
      key('office', TEST_KEYS.office, { allowedIps: ['10.0.0.0/8'] }),
    ],
    mappings: [],
    settings: { enabled: false, defaultPriority: options.defaultPriority ?? 1, queueMaxWaitMs: 0, queueMaxLength: 1000 },
  };
}
