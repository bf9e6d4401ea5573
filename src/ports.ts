// Interfaces the engine and the adapters depend on. Each has several implementations sharing one contract test suite.
import type { AuditEntry } from './catalog/audit/rows.js';
import type { TokenUsageBucket, UsageBucket } from './catalog/usage/rows.js';
import type { AccountStateView, AdmitRequest, AdmitResult, DayBounds, HealthState, LearnedTarget, QuotaRef, QuotaSubject } from './core/admission.js';
import type { Observation } from './core/types.js';

export type {
  AccountStateView,
  AdmitCandidate,
  AdmitRequest,
  AdmitResult,
  DayBounds,
  HealthState,
  LearnedTarget,
  QuotaRef,
  QuotaScope,
  QuotaSubject,
  QuotaWindow,
} from './core/admission.js';

/** Current use of one quota subject's windows (admin usage endpoint). Counted only for windows that have a limit. */
export interface QuotaUsage {
  /** Requests admitted in the last WINDOW_MS. */
  readonly minute: number;
  /** Requests admitted in the current day of the quota zone. */
  readonly day: number;
  readonly dayStartMs: number;
  readonly dayEndMs: number;
  /** Tokens reserved/reconciled in the last WINDOW_MS and in the current day (token quotas; absent from fakes). */
  readonly tokenMinute?: number;
  readonly tokenDay?: number;
}

/** Wall clock, injected so lifecycle tests can control time. */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

// ---------------------------------------------------------------------------------------------
// Rate and health state (memory per replica, or Redis shared by every replica)
// ---------------------------------------------------------------------------------------------

/** An account's health moved (healthy -> degraded -> unhealthy = circuit open, and back); stores report it for logs. */
export interface HealthChange {
  readonly pool: string;
  readonly accountId: string;
  readonly from: HealthState;
  readonly to: HealthState;
}

export interface RateStateStore {
  /** Atomically admit the first candidate with capacity (one round trip for Redis). */
  admit(request: AdmitRequest): Promise<AdmitResult>;
  /** Return an in-flight slot. Idempotent; never throws; off the request path. */
  release(pool: string, accountId: string, leaseId: string): void;
  /**
   * Fold a response observation into the account's state; with `releaseLeaseId`, also return that in-flight slot in
   * the same write (Redis: one script call instead of a script and a ZREM). Never throws or rejects: the promise
   * settles once the shared state holds the observation (or the write failed), so a caller can hold an answer until
   * every replica would see it. Callers that do not need that simply do not wait. `target` names the account's quota
   * scope and the request's per-model state model (AdmitRequest.model): the provider cooldown and learned limits land
   * in that slot (src/core/learned-state.ts); health, circuit and invalid hold stay with the account. Absent = the
   * account's own slot.
   */
  observe(
    pool: string,
    accountId: string,
    observation: Observation,
    nowMs: number,
    releaseLeaseId?: string | null,
    target?: LearnedTarget,
  ): Promise<void>;
  /**
   * Push an in-flight slot's expiry to nowMs + leaseMs while its holder is alive (a long streamed response), so leases
   * can be short and still outlive the requests that hold them. A lease already released or expired stays gone.
   * Never throws; fire-and-forget.
   */
  renew(pool: string, accountId: string, leaseId: string, leaseMs: number, nowMs: number): void;
  /**
   * Read the live state of accounts (admin, metrics). `scopes` names the quota scope of the accounts that have one
   * (accountId -> scope): their cooldown and learned limits are then the scope's, what admission reads for a request
   * without per-model state (src/core/learned-state.ts). Per-model slots are not part of the view.
   */
  inspect(pool: string, accountIds: readonly string[], nowMs: number, scopes?: ReadonlyMap<string, string>): Promise<AccountStateView[]>;
  /**
   * Forget an account's cooldown, circuit, invalid hold and learned provider limits (an operator re-enabled it).
   * Windows and leases are kept. Optional so fakes need not implement it; every shipped store does.
   */
  resetAccount?(pool: string, accountId: string): Promise<void>;
  /** Read a quota subject's current minute and day counts (admin usage). Optional for fakes; every shipped store has it. */
  inspectQuota?(subject: QuotaSubject, nowMs: number, dayBounds?: DayBounds): Promise<QuotaUsage>;
  /**
   * Reconcile a token reservation with the actual usage (exact TPM, src/core/token-window.ts): add deltaTokens
   * (actual - reserved; negative releases) to admission `leaseId`'s entry in the SAME windows its AdmitRequest.tokens
   * was charged to, where the admission stands in them (not at now): the account's tpm window, and the token minute
   * window and the token count of the admission's day (the day of `dayBounds` holding admittedAtMs) of each of
   * `quotas`. An admission already out of a window changes nothing there; a count never goes below 0. Redis: one
   * script call (one per slot on a Cluster). Never throws or rejects: the promise settles once the write is done (or
   * failed); callers need not wait. Optional for fakes; every shipped store has it.
   */
  reconcileTokens?(
    pool: string,
    accountId: string,
    leaseId: string,
    admittedAtMs: number,
    deltaTokens: number,
    quotas: readonly QuotaRef[],
    nowMs: number,
    dayBounds?: DayBounds,
  ): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Durable writes of the request path and the compiled snapshot (implemented over the catalog)
// ---------------------------------------------------------------------------------------------

/** Writes the request path produces; the engine queues them in a bounded buffer and flushes with retry. */
export interface DurableWrites {
  appendAudit(entries: readonly AuditEntry[]): Promise<void>;
  /**
   * Takes an active account out of its pool because its provider said so, and audits it; idempotent. `as`: `invalid`
   * (the credential was rejected: 401/403, Gemini API_KEY_INVALID; the default) or `disabled` (its credit is used up:
   * OpenAI insufficient_quota; an operator enables it again). Fakes may ignore `as`.
   */
  markAccountInvalid(accountId: string, reason: string, actor: string, as?: 'invalid' | 'disabled'): Promise<void>;
  /** Records last_used_at for keys (coalesced by the caller). */
  touchKeys(keyIds: readonly string[], at: Date): Promise<void>;
  /** Additive upsert into account_usage_stats. */
  addUsage(buckets: readonly UsageBucket[]): Promise<void>;
  /** Additive upsert into token_usage_stats. Optional for fakes: without it the buffer keeps no token rows. */
  addTokenUsage?(buckets: readonly TokenUsageBucket[]): Promise<void>;
}

/** Where the engine reads the current compiled snapshot from; null until the first load succeeded. */
export interface SnapshotSource {
  current(): import('./core/types.js').Snapshot | null;
}

// ---------------------------------------------------------------------------------------------
// What the gateway adapters call (implemented by src/engine.ts)
// ---------------------------------------------------------------------------------------------

/** Carries an admitted request from its decision to its response observation and slot release. */
export interface Ticket {
  readonly pool: string;
  readonly accountId: string;
  readonly accountName: string;
  readonly leaseId: string;
  readonly keyId: string;
  readonly startedAtMs: number;
  /**
   * When the account was admitted: startedAtMs, or later for a request that waited in the admission queue. Its token
   * reservation stands in the windows (and the quota day) of this instant. Absent reads as startedAtMs.
   */
  readonly admittedAtMs?: number;
  /**
   * The account has a max_concurrency: its slot must be held until the response has fully ended (a streamed body
   * included), so adapters that would otherwise release at the response headers keep it until the end.
   */
  readonly holdsConcurrencySlot: boolean;
  /**
   * The request's model when the decision knew it (src/model-routing.ts); null otherwise. The observation's learned
   * state lands in its per-model slot when the provider limits per model.
   */
  readonly model: string | null;
  /** The account's quota scope at admission (null = the account is its own scope): where its observation lands. */
  readonly scope?: string | null;
  /** The request's tenant (the key's, else its mapping's); absent or null without one. For token accounting. */
  readonly tenantId?: string | null;
  /** How the pool's provider reports token usage in its bodies (from its dialect); absent reads as OpenAI's. */
  readonly usageShape?: import('./core/usage.js').UsageShape;
  /**
   * Tokens reserved at admission (AdmitRequest.tokens; absent/0 = the request counted no tokens): what
   * DecisionEngine.reconcileTokens subtracts from the actual usage.
   */
  readonly reservedTokens?: number;
  /** The key/tenant quotas whose token windows the reservation was charged to (reconciled with it). */
  readonly tokenQuotas?: readonly QuotaRef[];
}

export interface RequestOutcome {
  readonly decision: import('./core/types.js').Decision;
  /** Set on allow: pass it back to observe() and release(). */
  readonly ticket: Ticket | null;
}

/**
 * Who produced the response the gateway passed back: the provider itself, or the gateway (a local reply: upstream
 * unreachable, connect timeout, no healthy upstream, route timeout). Only the provider's answer says anything about
 * the credential; a gateway reply never touches an account's health.
 */
export type ResponseOrigin = 'upstream' | 'gateway';

export interface ObserveOptions {
  /** Default 'upstream': an adapter that cannot tell (attributes not configured) keeps the old behaviour. */
  readonly origin?: ResponseOrigin;
  /** Also return the ticket's in-flight slot, in the same state write as the observation. */
  readonly release?: boolean;
  /**
   * The provider's error body, for the statuses of ERROR_BODY_STATUSES (src/core/provider-errors.ts), at most
   * MAX_ERROR_BODY_BYTES of it, its Content-Encoding already undone by the adapter; absent when the gateway could not
   * buffer it (Kong), was not asked, or the body could not be decoded.
   */
  readonly body?: Uint8Array | undefined;
}

/** How an adapter takes part in a decision that may wait in the admission queue (queue.max_wait_ms). */
export interface DecideOptions {
  /**
   * Aborted when the request is gone (Envoy reset the stream): a waiting decision leaves the queue at once. Read only
   * when the decision starts waiting, so an adapter may build it on first read (src/adapters/lazy-abort.ts).
   */
  readonly signal?: AbortSignal | undefined;
  /**
   * Called once, before the decision starts waiting for an account, with the longest it will wait: Envoy's adapter
   * extends its message timer, Kong's its decision deadline. Must not throw.
   */
  readonly onQueued?: ((maxWaitMs: number) => void) | undefined;
}

export interface DecisionEngine {
  /**
   * Decide one request. Rejects only on broken infrastructure; adapters turn that into a 503 keypool_unavailable.
   * May wait up to queue.max_wait_ms for an account of an exhausted pool (see DecideOptions).
   */
  decide(view: import('./core/types.js').RequestView, options?: DecideOptions): Promise<RequestOutcome>;
  /**
   * True when decide() needs the request's body (view.body) for this request: its pool needs the model and the path
   * does not name it. Adapters then buffer the body (bounded) before deciding; otherwise they decide on headers.
   * Optional for fakes: absent = never.
   */
  needsBody?(view: import('./core/types.js').RequestView): boolean;
  /**
   * The headers of this request that may carry a client credential (its key headers and every provider credential
   * header present). An adapter that answers before the decision (Envoy, asking for the body) removes them at once, so
   * a gateway that ignored the request for the body would forward no credential at all. Optional for fakes.
   */
  clientCredentialHeaders?(view: import('./core/types.js').RequestView): readonly string[];
  /**
   * Feed the upstream response status and headers back (cooldown, health, learned capacity, usage). Never throws.
   * Returns a promise when the observation changes who may be admitted (cooldown, invalidation, circuit, an exhausted
   * provider window): an adapter answers the response only after it settles, so no replica admits the account in the
   * gap. The promise never rejects and settles within the state timeout. Returns null for everything else (plain
   * successes): nothing to wait for.
   */
  observe(ticket: Ticket, status: number, headers: import('./core/types.js').HeaderBag, options?: ObserveOptions): Promise<void> | null;
  /**
   * Count one response's token usage (read from its body by the adapter, src/core/usage-stream.ts) into the account's
   * and the key's/tenant's usage and the token metrics; `model` (as the body named it) picks the price. Call at most once
   * per response. Never throws. Optional for fakes.
   */
  recordUsage?(ticket: Ticket, usage: import('./core/usage.js').TokenUsage, model?: string | null): void;
  /** Return the in-flight slot. Idempotent (safe to call after observe, on reset, on cancel). Never throws. */
  release(ticket: Ticket): void;
  /**
   * The allowed request was never forwarded (the gateway gave up while keypool decided, or keypool could not build its
   * answer): return its slot and give back its whole token reservation, which nothing will ever use. Instead of
   * release(), once. Never throws.
   */
  abandon(ticket: Ticket): void;
  /**
   * The provider reported the request's actual token usage (input + output): reconcile the ticket's token reservation
   * with it in the windows it was charged to (RateStateStore.reconcileTokens). No-op for a ticket that reserved no
   * tokens. Call at most once per ticket. Never throws; fire-and-forget. Optional so test engines need not implement
   * it; the Engine has it.
   */
  reconcileTokens?(ticket: Ticket, actualTokens: number): void;
  /**
   * Does a request for `provider` need its body (RequestView.body) for token accounting under the current snapshot?
   * False = an adapter need not read or buffer the body for keypool's sake. Optional like reconcileTokens.
   */
  needsBodyForTokens?(provider: string): boolean;
  /**
   * Does the decision read the request's path and query (`:path`, ProviderPool.readsPath)? A gateway that does not
   * pass it with the headers (Kong) fetches it only then. Optional like reconcileTokens.
   */
  needsPath?(view: import('./core/types.js').RequestView): boolean;
  /** Keep the ticket's in-flight slot while its request is still running (a long streamed response). Never throws. */
  renew(ticket: Ticket): void;
  /** How often an adapter renews a ticket it still holds (a third of the lease). */
  readonly renewIntervalMs: number;
  /** True once a snapshot is loaded (gRPC health SERVING). */
  isReady(): boolean;
}

/** Raised by a RateStateStore in failure mode `closed` when shared state cannot be reached; the engine answers 503. */
export class StateUnavailableError extends Error {
  constructor(message = 'shared rate state is unavailable') {
    super(message);
    this.name = 'StateUnavailableError';
  }
}
