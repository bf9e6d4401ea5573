// Wires one request through the current snapshot, the pure core and the rate state. The only thing adapters call.
import { authorizeRequest, buildAllow, denyForAdmission, type Authorized } from './core/request.js';
import { normaliseClientAddress } from './core/cidr.js';
import { credentialHeadersIn } from './core/apikey.js';
import { deny, inProviderShape } from './core/errors.js';
import { cursorSkips, orderCandidates } from './core/select.js';
import { changesAdmission, observeResponse } from './core/response.js';
import { scopeSiblings, stateModel } from './core/learned-state.js';
import type { Account, Deny, HeaderBag, Observation, ObservationOutcome, RequestView, Strategy } from './core/types.js';
import { AdmissionQueue, type AdmissionQueueEvents, type Attempt, type WaitResult } from './admission-queue.js';
import {
  StateUnavailableError,
  type AdmitResult,
  type Clock,
  type DecideOptions,
  type DecisionEngine,
  type ObserveOptions,
  type RateStateStore,
  type RequestOutcome,
  type SnapshotSource,
  type Ticket,
} from './ports.js';
import { DEFAULT_STATE_TIMEOUT_MS } from './stores/resilient-state.js';
import type { WriteBuffer } from './stores/write-buffer.js';
import type { Logger } from './log.js';
import { AdmissionLimits, needsBodyForTokens, requestCountsTokens, type RequestLimits } from './admission-limits.js';
import { EMPTY_LIMITS } from './core/providers/limits.js';
import { usageShapeFor, type TokenUsage } from './core/usage.js';
import { UsageRecorder, type TokensHook } from './usage-recorder.js';
import { TokenReservations } from './token-reservations.js';
import { ModelRouting } from './model-routing.js';
import { classifyProviderError, correctedObservation, QUOTA_EXHAUSTED_REASON_PREFIX, type ProviderErrorVerdict } from './core/provider-errors.js';

/** The account an upstream answer is about (a Ticket is one). */
export interface AccountAnswerTarget {
  readonly pool: string;
  readonly accountId: string;
  /** For logs. */
  readonly accountName: string;
  /** The requested model (null/absent = unknown): learned state lands in its per-model slot when the provider has them. */
  readonly model?: string | null | undefined;
  /** The account's quota scope when it was admitted (null = its own scope); absent = read from the current snapshot. */
  readonly scope?: string | null | undefined;
}

export interface EngineOptions {
  readonly snapshots: SnapshotSource;
  readonly state: RateStateStore;
  readonly writes: WriteBuffer;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Client headers that may carry the key when the route does not say otherwise. */
  readonly keyHeaders: readonly string[];
  readonly leaseMs: number;
  readonly defaultCooldownMs: number;
  /**
   * Longest an answer waits for a state-changing observation (cooldown, invalidation, circuit) to reach the shared
   * state (KEYPOOL_STATE_TIMEOUT_MS). Past it the answer goes anyway and stateCommitTimeouts counts it. Default 200.
   */
  readonly stateTimeoutMs?: number;
  /** Uniform [0,1) source for weighted-random; injectable for tests. */
  readonly randomUnit?: () => number;
  /** Observes every decision (metrics, the dashboard's recent activity) with the provider the request named. Must not throw. */
  readonly onDecision?: (outcome: 'allow' | Deny['code'], elapsedMs: number, provider: string) => void;
  /** IANA time zone of the quota day (KEYPOOL_QUOTA_TZ). Default UTC. */
  readonly quotaTimeZone?: string;
  /**
   * Observes each admission outcome of an authorized request with its tenant (a tenant row's id, else null) and
   * priority: per-tenant and shed metrics. Must not throw.
   */
  readonly onAdmission?: (tenant: string | null, priority: number, outcome: 'allow' | Deny['code']) => void;
  /** Observes what each upstream response said about its account (metrics). Must not throw. */
  readonly onObservation?: (ticket: Ticket, outcome: ObservationOutcome) => void;
  /** Observes the admission queue (metrics): a request starts waiting, a wait ends. Must not throw. */
  readonly onQueue?: AdmissionQueueEvents;
  /** Observes each response's token usage (metrics); the tenant is a tenant row's id or null. Must not throw. */
  readonly onTokens?: TokensHook;
}


/** An account the rate state admitted, with its lease. */
interface Admitted {
  readonly account: Account;
  readonly leaseId: string;
  /** The instant the admission was decided at (a queued request's retry: later than the decision's start). */
  readonly admittedAtMs: number;
  /** What it was admitted under: its token reservation (limits.tokens, 0 = none) and the quotas charged with it. */
  readonly limits: RequestLimits;
}

type AdmissionAttempt = Attempt<Admitted, Deny>;

const NOT_LOADED = deny('keypool_unavailable', { message: 'keypool has not loaded its configuration yet' });
const EMPTY_POOL = deny('no_healthy_account', { message: 'the provider pool has no active account' });
const STATE_UNAVAILABLE = deny('state_unavailable');
const ACTOR_ENGINE = 'keypool';
/** Accounts offered to the rate state per attempt; a second attempt offers the whole pool when all are blocked. */
const CANDIDATE_WINDOW = 16;
/** A request arriving while others of its pool wait queues behind them (it would otherwise overtake them). */
const BEHIND_WAITERS: AdmissionAttempt = { kind: 'refused', value: deny('pool_exhausted'), waitable: true, freesInMs: null };

export class Engine implements DecisionEngine {
  /** Per pool: where the next rotation starts (one step per request, plus the accounts skipped; see cursorSkips). */
  private readonly cursors = new Map<string, number>();
  private readonly randomUnit: () => number;
  private commitTimeouts = 0;
  private gatewayReplyCount = 0;
  readonly renewIntervalMs: number;
  private readonly stateTimeoutMs: number;
  private readonly queue: AdmissionQueue<Admitted, Deny>;
  private readonly limits: AdmissionLimits;
  private readonly usage: UsageRecorder;
  private readonly tokens: TokenReservations;
  /** Which accounts serve a request's model, and the models providers said an account cannot serve (per replica). */
  readonly models = new ModelRouting();

  constructor(private readonly options: EngineOptions) {
    this.limits = new AdmissionLimits(options.quotaTimeZone);
    this.usage = new UsageRecorder({ writes: options.writes, snapshots: options.snapshots, onTokens: options.onTokens });
    this.tokens = new TokenReservations({ state: options.state, limits: this.limits, clock: options.clock, logger: options.logger });
    this.randomUnit = options.randomUnit ?? Math.random;
    this.queue = new AdmissionQueue(options.onQueue);
    // Three renewals per lease: a lease survives two lost renewals (a slow Redis, a busy event loop).
    this.renewIntervalMs = Math.max(1, Math.floor(options.leaseMs / 3));
    this.stateTimeoutMs = options.stateTimeoutMs ?? DEFAULT_STATE_TIMEOUT_MS;
  }

  /** State-changing observations whose shared-state write did not settle within stateTimeoutMs (answered anyway). */
  get stateCommitTimeouts(): number {
    return this.commitTimeouts;
  }

  /** Responses the gateway generated itself (upstream unreachable, timeouts), left out of account health. */
  get gatewayReplies(): number {
    return this.gatewayReplyCount;
  }

  isReady(): boolean {
    return this.options.snapshots.current() !== null;
  }

  needsPath(view: RequestView): boolean {
    return this.options.snapshots.current()?.pools.get(view.provider)?.readsPath === true;
  }

  needsBody(view: RequestView): boolean {
    const snapshot = this.options.snapshots.current();
    if (snapshot === null) return false;
    // For the model (model-routed pools) or for the token estimate (exact TPM, token quotas; README).
    const forModel = this.models.needsBody(snapshot.pools.get(view.provider), view.headers);
    if (!forModel && !needsBodyForTokens(snapshot, view.provider)) return false;
    // Only for a caller who may use the pool: a missing, unknown, revoked or out-of-range key is refused on its headers,
    // so no unauthenticated request makes the gateway buffer a body (the digest is cached: decide() pays no second HMAC).
    const authorized = authorizeRequest(view, snapshot, this.options.clock.nowMs(), view.keyHeaders ?? this.options.keyHeaders);
    if (authorized.kind !== 'authorized') return false;
    return forModel || requestCountsTokens(authorized, snapshot);
  }

  clientCredentialHeaders(view: RequestView): readonly string[] {
    const present = (view.keyHeaders ?? this.options.keyHeaders).filter((name) => view.headers[name] !== undefined);
    return credentialHeadersIn(view.headers, present);
  }

  async decide(view: RequestView, options: DecideOptions = {}): Promise<RequestOutcome> {
    // Decision latency is measured on the monotonic sub-millisecond clock; startedAtMs is the wall-clock instant
    // the rules evaluate (expiry, grace windows, cooldowns) and may be a test clock.
    const startedAt = performance.now();
    const startedAtMs = this.options.clock.nowMs();
    const snapshot = this.options.snapshots.current();
    if (!snapshot) return this.denied(NOT_LOADED, view, startedAtMs, startedAt);

    const auth = authorizeRequest(view, snapshot, startedAtMs, view.keyHeaders ?? this.options.keyHeaders);
    if (auth.kind === 'deny') return this.denied(auth, view, startedAtMs, startedAt);
    if (auth.pool.accounts.length === 0) return this.denied(EMPTY_POOL, view, startedAtMs, startedAt);
    // Only the accounts that serve the request's model (pools that need it; src/model-routing.ts).
    const routed = this.models.choose(auth.pool, view, startedAtMs);
    if (routed.kind === 'deny') return this.denied(routed.deny, view, startedAtMs, startedAt);
    const authorized: Authorized = routed.pool === auth.pool ? auth : { ...auth, pool: routed.pool };
    const model = routed.model;

    const pool = authorized.pool;
    const strategy = view.strategyOverride ?? pool.strategy;
    const cursor = this.cursors.get(pool.slug) ?? 0;
    // Advance at once, so concurrent decisions of this pool do not all start on the same account.
    this.cursors.set(pool.slug, cursor + 1);
    const limits = this.limits.of(authorized, snapshot, startedAtMs, view);
    // Provider-learned state is read per model only where the provider limits per model (learned-state.ts).
    const learnedModel = stateModel(pool.dialect, model);
    const { queueMaxWaitMs, queueMaxLength } = snapshot.prioritySettings;
    const queueing = queueMaxWaitMs > 0;
    const first =
      queueing && this.queue.hasWaiters(pool.slug) && this.queue.size < queueMaxLength
        ? BEHIND_WAITERS
        : await this.admitFromPool(authorized, strategy, cursor, startedAtMs, limits, learnedModel);
    let attempt: AdmissionAttempt | WaitResult<Admitted, Deny> = first;
    // Wait in priority order (admission-queue.ts) when an account frees up by itself within the wait: a slot when an
    // in-flight request ends (freesInMs null), a window rolling over or a cooldown ending (freesInMs known).
    if (first.kind === 'refused' && queueing && first.waitable && (first.freesInMs ?? 0) <= queueMaxWaitMs) {
      attempt = await this.queue.wait({
        pool: pool.slug,
        priority: authorized.priority.priority,
        maxWaitMs: queueMaxWaitMs,
        maxLength: queueMaxLength,
        refusal: first.value,
        attempt: () => {
          // Limits again at the retry's instant: a wait may cross the quota day's midnight.
          const nowMs = this.options.clock.nowMs();
          return this.admitFromPool(authorized, strategy, cursor, nowMs, this.limits.of(authorized, snapshot, nowMs, view), learnedModel);
        },
        // An admission that landed after the wait ended: the request is answered 429, never forwarded.
        undo: (late) => {
          this.releaseLease(pool.slug, late.account.id, late.leaseId);
          this.tokens.giveBack(pool.slug, late.account.id, late.leaseId, late.admittedAtMs, late.limits.tokenQuotas, late.limits.tokens);
        },
        signal: options.signal,
        onEnter: options.onQueued && (() => options.onQueued?.(queueMaxWaitMs)),
      });
    }
    this.options.onAdmission?.(limits.tenantRow, authorized.priority.priority, attempt.kind === 'refused' ? attempt.value.code : 'allow');
    if (attempt.kind === 'refused') return this.denied(attempt.value, view, startedAtMs, startedAt);
    const { account, leaseId, admittedAtMs, limits: admittedUnder } = attempt.value;
    const skips = cursorSkips(pool, strategy, cursor, account.id);
    if (skips > 0) this.cursors.set(pool.slug, (this.cursors.get(pool.slug) ?? 0) + skips);
    this.options.writes.touchKey(authorized.key.id, startedAtMs);
    this.options.onDecision?.('allow', performance.now() - startedAt, view.provider);
    return {
      decision: buildAllow(authorized, account),
      ticket: {
        pool: authorized.pool.slug,
        accountId: account.id,
        accountName: account.name,
        leaseId,
        keyId: authorized.key.id,
        startedAtMs,
        holdsConcurrencySlot: account.maxConcurrency !== null,
        model,
        scope: account.scope,
        tenantId: authorized.priority.tenantId,
        usageShape: usageShapeFor(pool.dialect),
        admittedAtMs,
        ...(admittedUnder.tokens > 0 ? { reservedTokens: admittedUnder.tokens, tokenQuotas: admittedUnder.tokenQuotas } : {}),
      },
    };
  }

  needsBodyForTokens(provider: string): boolean {
    const snapshot = this.options.snapshots.current();
    return snapshot !== null && needsBodyForTokens(snapshot, provider);
  }

  reconcileTokens(ticket: Ticket, actualTokens: number): void {
    this.tokens.reconcile(ticket, actualTokens);
  }

  abandon(ticket: Ticket): void {
    this.release(ticket);
    this.tokens.reconcile(ticket, 0);
  }

  observe(ticket: Ticket, status: number, headers: HeaderBag, options: ObserveOptions = {}): Promise<void> | null {
    try {
      const nowMs = this.options.clock.nowMs();
      if (options.origin === 'gateway') {
        // The gateway's own reply (connect failure, timeout, no healthy upstream) says nothing about the credential:
        // counting it would open circuits on every account while the network, not the provider, is down.
        this.gatewayReplyCount++;
        this.options.logger.debug({ pool: ticket.pool, account: ticket.accountName, status }, 'gateway-generated reply; account state unchanged');
        if (options.release) this.release(ticket);
        return null;
      }
      const { observation, committed } = this.observeAccount(ticket, status, headers, {
        nowMs,
        releaseLeaseId: options.release ? ticket.leaseId : null,
        source: 'upstream',
        actor: ACTOR_ENGINE,
        body: options.body,
        model: ticket.model,
      });
      // The slot went back with the observation: the pool's first waiting request retries once the state holds it.
      if (options.release) void committed.then(() => this.queue.notify(ticket.pool));
      // The provider refused or failed the request (4xx/5xx): it bills no tokens and reports no usage, so the
      // reservation goes back now (a retried attempt reserves its own). A gateway reply above keeps it: the provider
      // may have started work it bills before the gateway gave up.
      if (status >= 400) this.tokens.reconcile(ticket, 0);
      this.options.writes.recordUsage(ticket.accountId, nowMs, observation.outcome, nowMs - ticket.startedAtMs);
      this.options.onObservation?.(ticket, observation.outcome);
      return changesAdmission(observation) ? this.boundedCommit(committed) : null;
    } catch (error) {
      this.options.logger.error({ err: error, pool: ticket.pool }, 'failed to observe an upstream response');
      if (options.release) this.release(ticket);
      return null;
    }
  }

  /**
   * Folds one provider answer about an account into its state: cooldown, circuit, learned limits (the rate state) and,
   * for a rejected credential, the account's durable `invalid` status. The one place an upstream answer becomes
   * account state: proxied responses (observe) and the admin health check both come here. `committed` settles once
   * the rate state holds the observation (unbounded here: callers bound their wait); `invalidated` once the durable
   * write has been tried, when there is one.
   */
  observeAccount(
    account: AccountAnswerTarget,
    status: number,
    headers: HeaderBag,
    options: {
      readonly nowMs: number;
      readonly releaseLeaseId?: string | null;
      /** What answered, for the invalidation reason: `upstream answered 401`, `health check: upstream answered 401`. */
      readonly source: 'upstream' | 'health check';
      readonly actor: string;
      /** The provider's error body (ObserveOptions.body): what the status cannot say (src/core/provider-errors.ts). */
      readonly body?: Uint8Array | undefined;
      /** The request's model, when known: a model error takes it off this account for a while. */
      readonly model?: string | null;
    },
  ): { observation: Observation; committed: Promise<void>; invalidated: Promise<void> | null } {
    const { nowMs } = options;
    const pool = this.options.snapshots.current()?.pools.get(account.pool);
    const dialect = pool?.dialect ?? 'none';
    const verdict: ProviderErrorVerdict = options.body === undefined ? 'unknown' : classifyProviderError(status, options.body, options.model);
    const observation = correctedObservation(observeResponse(dialect, status, headers, nowMs, this.options.defaultCooldownMs), verdict);
    // The slot the provider's cooldown and limits land in: the account's quota scope, per model where the provider
    // limits per model (learned-state.ts). A ticket carries the scope it was admitted under; a health check's target
    // (no ticket) finds it in the current snapshot.
    const scope = account.scope !== undefined ? account.scope : (pool?.accounts.find((a) => a.id === account.accountId)?.scope ?? null);
    const target = { scope, model: stateModel(dialect, account.model) };
    let committed = this.options.state.observe(account.pool, account.accountId, observation, nowMs, options.releaseLeaseId ?? null, target);
    const logged = { pool: account.pool, accountId: account.accountId, account: account.accountName, status };
    let invalidated: Promise<void> | null = null;
    if (verdict === 'model_unavailable' && options.model) {
      this.models.removeModel(account.accountId, options.model, nowMs);
      this.options.logger.info({ ...logged, model: options.model }, 'provider says the account cannot serve this model; left out for it a while');
    }
    if (observation.outcome === 'quota_exhausted' && verdict === 'quota_exhausted') {
      // Credit used up: retrying never helps. Disable the account, and the accounts sharing its quota scope (the same
      // credit), durably and audited, and hold them out of admission at once on every replica.
      const reason = `${QUOTA_EXHAUSTED_REASON_PREFIX} the provider says the credit is used up (insufficient_quota)`;
      const siblings = scopeSiblings(pool?.accounts ?? [], account.accountId, scope);
      const siblingObservation: Observation = { ...observation, learned: EMPTY_LIMITS };
      committed = Promise.all([
        committed,
        ...siblings.map((sibling) => this.options.state.observe(account.pool, sibling.id, siblingObservation, nowMs)),
      ]).then(() => undefined);
      invalidated = Promise.all(
        [account.accountId, ...siblings.map((sibling) => sibling.id)].map((id) => this.options.writes.invalidateAccount(id, reason, options.actor, 'disabled')),
      ).then(() => undefined);
      this.options.logger.warn({ ...logged, scopeSiblings: siblings.length }, 'account disabled: the provider says its credit is used up');
    } else if (observation.outcome === 'invalid_credential') {
      const reason = `${options.source === 'upstream' ? '' : `${options.source}: `}upstream answered ${status}`;
      invalidated = this.options.writes.invalidateAccount(account.accountId, reason, options.actor);
      this.options.logger.warn(logged, 'account invalidated: upstream rejected its credential');
    } else if (observation.outcome === 'rate_limited') {
      this.options.logger.info({ ...logged, cooldownUntil: new Date(observation.cooldownUntilMs ?? nowMs).toISOString() }, 'account cooling down');
    }
    if (observation.cappedResetAtMs !== undefined) {
      this.options.logger.warn(
        { ...logged, reportedResetAt: new Date(observation.cappedResetAtMs).toISOString() },
        'provider reported a rate-limit reset beyond any real window; capped',
      );
    }
    return { observation, committed, invalidated };
  }

  recordUsage(ticket: Ticket, usage: TokenUsage, model: string | null = null): void {
    try {
      this.usage.record(ticket, usage, model, this.options.clock.nowMs());
    } catch (error) {
      this.options.logger.error({ err: error, pool: ticket.pool }, 'failed to record token usage');
    }
    this.tokens.settle(ticket, usage);
  }

  release(ticket: Ticket): void {
    this.releaseLease(ticket.pool, ticket.accountId, ticket.leaseId);
  }

  /** Returns a slot and lets the pool's first waiting request (if any) retry at once. */
  private releaseLease(pool: string, accountId: string, leaseId: string): void {
    try {
      this.options.state.release(pool, accountId, leaseId);
    } catch (error) {
      this.options.logger.error({ err: error, pool }, 'failed to release an in-flight slot');
    }
    this.queue.notify(pool);
  }

  renew(ticket: Ticket): void {
    try {
      this.options.state.renew(ticket.pool, ticket.accountId, ticket.leaseId, this.options.leaseMs, this.options.clock.nowMs());
    } catch (error) {
      this.options.logger.error({ err: error, pool: ticket.pool }, 'failed to renew an in-flight slot');
    }
  }

  /** `committed`, or a resolved promise once stateTimeoutMs passed first (counted): an answer is never held longer. */
  private boundedCommit(committed: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.commitTimeouts++;
        this.options.logger.warn({ timeoutMs: this.stateTimeoutMs }, 'state change not confirmed by the shared state in time; answering anyway');
        resolve();
      }, this.stateTimeoutMs);
      void committed.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * One admission attempt: the candidate window first; when every account of it is blocked, the rest of the pool
   * decides between an allow and a 429/503.
   */
  private async admitFromPool(
    authorized: Authorized,
    strategy: Strategy,
    cursor: number,
    nowMs: number,
    limits: RequestLimits,
    model: string | null,
  ): Promise<AdmissionAttempt> {
    const pool = authorized.pool;
    const leastLoaded = strategy === 'least-loaded';
    const window = orderCandidates(pool, strategy, cursor, this.randomUnit, CANDIDATE_WINDOW);
    let attempt = await this.admit(authorized, window, leastLoaded, nowMs, limits, model);
    // A key or tenant over quota stays over it whichever account is offered.
    const retryable = attempt.kind === 'refused' && attempt.value !== STATE_UNAVAILABLE && attempt.value.code !== 'quota_exceeded';
    if (retryable && window.length < pool.accounts.length) {
      attempt = await this.admit(authorized, orderCandidates(pool, strategy, cursor, this.randomUnit), leastLoaded, nowMs, limits, model);
    }
    return attempt;
  }

  private async admit(
    authorized: Authorized,
    ordered: readonly Account[],
    leastLoaded: boolean,
    nowMs: number,
    limits: RequestLimits,
    model: string | null,
  ): Promise<AdmissionAttempt> {
    let result: AdmitResult;
    try {
      result = await this.options.state.admit({
        pool: authorized.pool.slug,
        candidates: ordered,
        leastLoaded,
        nowMs,
        leaseMs: this.options.leaseMs,
        quotas: limits.quotas,
        dayBounds: limits.dayBounds,
        reserve: limits.reserve,
        model,
        ...(limits.tokens > 0 ? { tokens: limits.tokens } : {}),
      });
    } catch (error) {
      if (error instanceof StateUnavailableError) return { kind: 'refused', value: STATE_UNAVAILABLE, waitable: false, freesInMs: null };
      throw error;
    }
    if (!result.ok) {
      return {
        kind: 'refused',
        value: denyForAdmission(result.reason, result.retryAtMs, nowMs, result.limit),
        // Only an exhausted pool frees up by itself; open circuits and invalid accounts are not waited for.
        waitable: result.reason === 'exhausted',
        freesInMs: result.retryAtMs === null ? null : Math.max(0, result.retryAtMs - nowMs),
      };
    }
    const admittedId = result.accountId;
    const account = ordered.find((candidate) => candidate.id === admittedId);
    if (!account) throw new Error('rate state admitted an account that was not offered');
    return { kind: 'admitted', value: { account, leaseId: result.leaseId, admittedAtMs: nowMs, limits } };
  }

  private denied(denial: Deny, view: RequestView, startedAtMs: number, startedAt: number): RequestOutcome {
    if (denial.audit) {
      this.options.writes.auditDenial({
        keyId: denial.audit.keyId,
        action: denial.audit.action,
        actor: ACTOR_ENGINE,
        // Canonical text, or nothing: the attribute is whatever the gateway passed on, and a value PostgreSQL cannot
        // store (a NUL byte) or an operator cannot search by must not reach the audit log.
        clientIp: view.clientAddress === null ? null : normaliseClientAddress(view.clientAddress),
        metadata: { provider: view.provider, code: denial.code },
        at: new Date(startedAtMs),
      });
    }
    this.options.logger.info(
      { code: denial.code, status: denial.status, provider: view.provider, keyId: denial.audit?.keyId },
      'request denied',
    );
    this.options.onDecision?.(denial.code, performance.now() - startedAt, view.provider);
    // Answer in the route provider's error shape, so its SDK raises its own exception class (core/errors.ts).
    const dialect = this.options.snapshots.current()?.pools.get(view.provider)?.dialect;
    return { decision: inProviderShape(denial, dialect), ticket: null };
  }
}
