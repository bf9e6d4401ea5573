// Prometheus metrics on a registry of our own (never prom-client's global one, so two services in one process or
// one test file do not collide). Event counters are bumped by hooks (Engine.onDecision and onObservation,
// the admin server); per-account and infrastructure gauges are computed at scrape time from their sources.
// Labels carry account NAMES and provider slugs only: never a key, a key id or a secret.
import { scopesOf } from '../core/learned-state.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WaitOutcome } from '../admission-queue.js';
import type { Deny, ObservationOutcome } from '../core/types.js';
import type { AccountStateView, Clock, HealthState, RateStateStore, SnapshotSource } from '../ports.js';
import { DecisionTally, TenantTally } from './metric-tallies.js';
import { TokenTally } from './token-tally.js';
import type { TokensHook } from '../usage-recorder.js';

export type BreakerState = 'closed' | 'open' | 'half-open';
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half-open'];
const HEALTH_STATES: readonly (HealthState | 'invalid')[] = ['healthy', 'degraded', 'unhealthy', 'invalid'];
const WRITE_KINDS = ['audit', 'usage', 'key_touch', 'invalidation', 'tokens'] as const;
const DROP_REASONS = ['buffer_full', 'rejected'] as const;

/** Snapshot holder facts the metrics read (SnapshotHolder in src/snapshot/holder.ts provides them). */
export interface SnapshotStatus extends SnapshotSource {
  /** When the last successful load finished; null before the first. */
  readonly lastReloadAtMs: number | null;
  /** Failed reloads since start (the last good snapshot stayed in use). */
  readonly reloadFailures: number;
}

/** Where scrape-time gauges read from; attached once the runtime is composed. */
export interface MetricsSources {
  readonly snapshots: SnapshotStatus;
  readonly state: Pick<RateStateStore, 'inspect'>;
  readonly clock: Clock;
  readonly writes?:
    | {
        readonly pending: number;
        droppedByCause(): ReadonlyArray<{ readonly kind: string; readonly reason: string; readonly count: number }>;
      }
    | undefined;
  /** Engine counters (src/engine.ts): state commits that timed out, gateway-generated replies left out of health. */
  readonly engine?: { readonly stateCommitTimeouts: number; readonly gatewayReplies: number } | undefined;
  /** Current circuit-breaker states by breaker name (`state_store`, `database`). */
  readonly breakers?: (() => Readonly<Record<string, BreakerState>>) | undefined;
}

export interface KeypoolMetricsOptions {
  /** Also export Node.js process metrics (process_*, nodejs_*) on this registry. Default true. */
  readonly processMetrics?: boolean;
  /** Upper bound on one scrape's rate-state reads (Redis may be slow); accounts are left out when it passes. */
  readonly inspectTimeoutMs?: number;
}

interface AccountReading {
  readonly provider: string;
  readonly account: string;
  readonly view: AccountStateView;
}

/** Latency buckets for a decision: microseconds in the common case, up to the state-store timeout. */

export class KeypoolMetrics {
  readonly registry = new Registry();
  private sources: MetricsSources | undefined;
  /** The reading in progress: prom-client starts every gauge's collect() in the same tick, so one scrape shares it. */
  private inspection: Promise<AccountReading[]> | undefined;
  private readonly inspectTimeoutMs: number;

  private readonly decisions = new DecisionTally();
  private readonly tenants = new TenantTally();
  private readonly tokens = new TokenTally();
  private readonly rateLimited: Counter<'provider' | 'account'>;
  private readonly invalid: Counter<'provider' | 'account'>;
  private readonly quotaExhausted: Counter<'provider' | 'account'>;
  private readonly adminRequests: Counter<'method' | 'route' | 'status'>;
  private readonly overdueKeys: Gauge;
  private readonly autoRevoked: Counter;
  private readonly quotaReprobed: Counter;
  private readonly queueWaiting: Gauge<'priority'>;
  private readonly queueWait: Histogram<'priority' | 'outcome'>;
  private readonly queueResults: Counter<'priority' | 'outcome'>;

  constructor(options: KeypoolMetricsOptions = {}) {
    const registers = [this.registry];
    this.inspectTimeoutMs = options.inspectTimeoutMs ?? 1000;
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    for (const metric of this.decisions.metrics()) this.registry.registerMetric(metric);
    for (const metric of this.tenants.metrics()) this.registry.registerMetric(metric);
    for (const metric of this.tokens.metrics()) this.registry.registerMetric(metric);
    this.rateLimited = new Counter({
      name: 'keypool_upstream_rate_limited_total',
      help: 'Upstream 429 rate-limit answers seen per account.',
      labelNames: ['provider', 'account'],
      registers,
    });
    this.invalid = new Counter({
      name: 'keypool_upstream_invalid_total',
      help: 'Upstream answers rejecting an account credential (401/403, Gemini API_KEY_INVALID) per account.',
      labelNames: ['provider', 'account'],
      registers,
    });
    this.quotaExhausted = new Counter({
      name: 'keypool_upstream_quota_exhausted_total',
      help: 'Upstream answers saying an account has no credit left (402, OpenAI insufficient_quota) per account.',
      labelNames: ['provider', 'account'],
      registers,
    });
    this.adminRequests = new Counter({
      name: 'keypool_admin_requests_total',
      help: 'Admin API requests by method, route template and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.overdueKeys = new Gauge({
      name: 'keypool_keys_rotation_overdue',
      help: 'Active system keys past their rotate_after_days (refreshed by the key lifecycle sweep).',
      registers,
    });
    this.autoRevoked = new Counter({
      name: 'keypool_keys_auto_revoked_total',
      help: 'Keys revoked by the lifecycle sweep because rotation was overdue (setting keys.auto_revoke_overdue).',
      registers,
    });
    this.quotaReprobed = new Counter({
      name: 'keypool_quota_reprobes_total',
      help: 'Accounts disabled as quota_exhausted that the lifecycle sweep enabled again to re-probe (KEYPOOL_QUOTA_REPROBE_MS).',
      registers,
    });
    this.queueWaiting = new Gauge({
      name: 'keypool_queue_waiting',
      help: 'Requests waiting in this replica\'s admission queue for an account (queue.max_wait_ms), by priority.',
      labelNames: ['priority'],
      registers,
    });
    this.queueWait = new Histogram({
      name: 'keypool_queue_wait_seconds',
      help: 'How long requests waited in the admission queue, by priority and how the wait ended.',
      labelNames: ['priority', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.queueResults = new Counter({
      name: 'keypool_queue_results_total',
      help:
        'Ends of admission-queue waits by priority and outcome: admitted, timed_out (429), cancelled (client gone), ' +
        'refused (pool unhealthy or state unavailable meanwhile), full (queue.max_length reached: never waited, 429).',
      labelNames: ['priority', 'outcome'],
      registers,
    });
    this.registerScrapeGauges(registers);
  }

  /** Engine hook (`EngineOptions.onQueue.onEnter`): a request started waiting. */
  readonly onQueueEnter = (priority: number): void => {
    this.queueWaiting.inc({ priority: String(priority) });
  };

  /** Engine hook (`EngineOptions.onQueue.onLeave`): a wait ended (`full`: it never started). */
  readonly onQueueLeave = (priority: number, outcome: WaitOutcome, waitedMs: number): void => {
    const labels = { priority: String(priority), outcome };
    this.queueResults.inc(labels);
    if (outcome === 'full') return;
    this.queueWaiting.dec({ priority: labels.priority });
    this.queueWait.observe(labels, Math.max(0, waitedMs) / 1000);
  };

  /** Give the scrape-time gauges their sources (the runtime composes them after the engine). */
  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** Engine hook (`EngineOptions.onDecision`): `allow` or a deny code. Never throws. Runs on every request. */
  readonly onDecision = (outcome: 'allow' | Deny['code'] | (string & {}), elapsedMs: number): void => {
    this.decisions.record(outcome, elapsedMs);
  };

  /** Engine hook (`EngineOptions.onAdmission`): per-tenant outcome and shed counts. Never throws. */
  readonly onAdmission = (tenant: string | null, priority: number, outcome: 'allow' | Deny['code']): void => {
    this.tenants.record(tenant, priority, outcome);
  };

  /** Engine hook (`EngineOptions.onTokens`): one response's tokens per account and per tenant. Never throws. */
  readonly onTokens: TokensHook = (ticket, usage, tenantRow): void => {
    this.tokens.record(ticket.pool, ticket.accountName, tenantRow, usage);
  };

  /** This replica's admitted/refused counts of one tenant (admin usage endpoint). */
  tenantCounts(tenant: string): { readonly admitted: number; readonly refused: Readonly<Record<string, number>> } {
    return this.tenants.countsOf(tenant);
  }

  /** Counts what one upstream response said about an account (Engine hook `onObservation`). */
  onObservation(provider: string, account: string, outcome: ObservationOutcome): void {
    if (outcome === 'rate_limited') this.rateLimited.inc({ provider, account });
    else if (outcome === 'invalid_credential') this.invalid.inc({ provider, account });
    else if (outcome === 'quota_exhausted') this.quotaExhausted.inc({ provider, account });
  }

  onAdminRequest(method: string, route: string, status: number): void {
    this.adminRequests.inc({ method, route, status: String(status) });
  }

  setOverdueKeys(count: number): void {
    this.overdueKeys.set(count);
  }

  onQuotaReprobed(count: number): void {
    if (count > 0) this.quotaReprobed.inc(count);
  }

  onAutoRevoked(count: number): void {
    if (count > 0) this.autoRevoked.inc(count);
  }

  /** Prometheus text exposition. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  private registerScrapeGauges(registers: Registry[]): void {
    // prom-client calls collect() with `this` bound to the metric it fills, so collectors reach us through `self`.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    const perAccount = (name: string, help: string, value: (r: AccountReading, nowMs: number) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['provider', 'account'],
        registers,
        async collect() {
          this.reset();
          const nowMs = self.sources?.clock.nowMs() ?? Date.now();
          for (const reading of await self.readAccounts()) {
            const v = value(reading, nowMs);
            if (v !== null) this.set({ provider: reading.provider, account: reading.account }, v);
          }
        },
      });

    new Gauge({
      name: 'keypool_account_health_state',
      help: 'Account health as a state set: 1 for the current state (healthy, degraded, unhealthy, invalid).',
      labelNames: ['provider', 'account', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const { provider, account, view } of await self.readAccounts()) {
          const current = view.invalid ? 'invalid' : view.health;
          for (const state of HEALTH_STATES) this.set({ provider, account, state }, state === current ? 1 : 0);
        }
      },
    });
    perAccount('keypool_account_cooldown_seconds', 'Seconds until a cooling-down account (after a 429) may be used again.', (r, nowMs) =>
      r.view.cooldownUntilMs === null ? 0 : Math.max(0, (r.view.cooldownUntilMs - nowMs) / 1000),
    );
    perAccount('keypool_account_remaining_requests', 'Remaining requests in the window, as the provider last reported.', (r) => r.view.learned.requestsRemaining);
    perAccount('keypool_account_remaining_tokens', 'Remaining tokens in the window, as the provider last reported.', (r) => r.view.learned.tokensRemaining);
    perAccount('keypool_account_in_flight', 'Requests currently in flight on the account.', (r) => r.view.inFlight);

    new Gauge({
      name: 'keypool_snapshot_age_seconds',
      help: 'Seconds since the configuration snapshot was last loaded successfully (-1 before the first load).',
      registers,
      collect() {
        const sources = self.sources;
        const snapshot = sources?.snapshots.current() ?? null;
        const loadedAtMs = sources?.snapshots.lastReloadAtMs ?? snapshot?.loadedAtMs ?? null;
        this.set(sources && loadedAtMs !== null ? Math.max(0, (sources.clock.nowMs() - loadedAtMs) / 1000) : -1);
      },
    });
    new Gauge({
      name: 'keypool_snapshot_version',
      help: 'Version of the configuration snapshot in use (0 before the first load).',
      registers,
      collect() {
        this.set(self.sources?.snapshots.current()?.version ?? 0);
      },
    });
    monotonic(registers, 'keypool_snapshot_reload_failures_total', 'Configuration reloads that failed (the last good snapshot stayed in use).', () => self.sources?.snapshots.reloadFailures);
    const droppedSeen = new Map<string, number>();
    new Counter({
      name: 'keypool_dropped_writes_total',
      help: 'Durable writes dropped, by kind (audit, usage, key_touch, invalidation) and reason (buffer_full: the database was away too long; rejected: the database refused the row).',
      labelNames: ['kind', 'reason'],
      registers,
      collect() {
        // Every series exists from the first scrape (at 0), so alerts on increase() see the first drop.
        if (droppedSeen.size === 0) {
          for (const kind of WRITE_KINDS) for (const reason of DROP_REASONS) this.inc({ kind, reason }, 0);
          droppedSeen.set('', 0);
        }
        for (const { kind, reason, count } of safeCall(() => self.sources?.writes?.droppedByCause()) ?? []) {
          const cause = `${kind}|${reason}`;
          const seen = droppedSeen.get(cause) ?? 0;
          if (count > seen) {
            this.inc({ kind, reason }, count - seen);
            droppedSeen.set(cause, count);
          }
        }
      },
    });
    monotonic(
      registers,
      'keypool_state_commit_timeouts_total',
      'State-changing observations (cooldown, invalidation, circuit) answered before the shared state confirmed them (KEYPOOL_STATE_TIMEOUT_MS passed).',
      () => self.sources?.engine?.stateCommitTimeouts,
    );
    monotonic(
      registers,
      'keypool_gateway_replies_total',
      'Responses the gateway generated itself (upstream unreachable, timeout), left out of account health.',
      () => self.sources?.engine?.gatewayReplies,
    );
    new Gauge({
      name: 'keypool_pending_writes',
      help: 'Durable writes waiting in the buffer for the database.',
      registers,
      collect() {
        this.set(self.sources?.writes?.pending ?? 0);
      },
    });
    new Gauge({
      name: 'keypool_breaker_state',
      help: 'Circuit breakers (state_store, database) as a state set: 1 for the current state (closed, open, half-open).',
      labelNames: ['breaker', 'state'],
      registers,
      collect() {
        this.reset();
        const states = safeCall(() => self.sources?.breakers?.()) ?? {};
        for (const [breaker, current] of Object.entries(states)) {
          for (const state of BREAKER_STATES) this.set({ breaker, state }, state === current ? 1 : 0);
        }
      },
    });
  }

  /** Live state of every active account in the snapshot, one read per pool, shared by the gauges of one scrape. */
  private readAccounts(): Promise<AccountReading[]> {
    const sources = this.sources;
    if (!sources) return Promise.resolve([]);
    this.inspection ??= inspectAll(sources, sources.clock.nowMs(), this.inspectTimeoutMs).finally(() => {
      this.inspection = undefined;
    });
    return this.inspection;
  }
}

async function inspectAll(sources: MetricsSources, nowMs: number, timeoutMs: number): Promise<AccountReading[]> {
  const snapshot = sources.snapshots.current();
  if (!snapshot) return [];
  const perPool = await Promise.all(
    [...snapshot.pools.values()].map(async (pool) => {
      if (pool.accounts.length === 0) return [];
      const names = new Map(pool.accounts.map((a) => [a.id, a.name]));
      try {
        const views = await withTimeout(sources.state.inspect(pool.slug, [...names.keys()], nowMs, scopesOf(pool.accounts)), timeoutMs);
        return views.flatMap((view) => {
          const account = names.get(view.accountId);
          return account === undefined ? [] : [{ provider: pool.slug, account, view }];
        });
      } catch {
        return []; // state store unreachable: its breaker gauge says so; leave the accounts out of this scrape
      }
    }),
  );
  return perPool.flat();
}

/** A counter mirroring a monotonically growing number held elsewhere (added by the difference at each scrape). */
function monotonic(registers: Registry[], name: string, help: string, read: () => number | undefined): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers,
    collect() {
      const value = safeCall(read);
      if (value !== undefined && value > seen) {
        this.inc(value - seen);
        seen = value;
      }
    },
  });
}

function safeCall<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), timeoutMs);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
