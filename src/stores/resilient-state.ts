// Shared (Redis) rate state behind a circuit breaker, with a per-replica fallback.
// Every admit settles within timeoutMs: a slow or dead Redis costs one timeout per request until the breaker opens,
// then nothing. failureMode 'local' continues on a MemoryRateStateStore whose limits are divided by the expected
// number of replicas; 'closed' rejects with StateUnavailableError (the engine answers 503 state_unavailable).
// When the breaker closes again (a half-open trial admit succeeded) requests return to shared state by themselves.
import CircuitBreaker from 'opossum';
import type { Observation } from '../core/types.js';
import {
  type AccountStateView,
  type AdmitRequest,
  type AdmitResult,
  type DayBounds,
  type HealthChange,
  type LearnedTarget,
  type QuotaRef,
  type QuotaSubject,
  type QuotaUsage,
  type RateStateStore,
  StateUnavailableError,
} from '../ports.js';
import { MemoryRateStateStore } from './memory-state.js';

export { StateUnavailableError };

export type StateFailureMode = 'local' | 'closed';
/**
 * Bound on one shared-state admission before the breaker counts a failure (KEYPOOL_STATE_TIMEOUT_MS): 50 ms tripped
 * the breaker under CPU load with Redis healthy (wave 1, measured), 200 ms did not.
 */
export const DEFAULT_STATE_TIMEOUT_MS = 200;
export type BreakerState = 'closed' | 'open' | 'half-open';
/** shared: decisions use the shared store; local: per-replica fallback (failure mode 'local' while Redis is out). */
export type StateMode = 'shared' | 'local';

export interface StateTransition {
  /** Shared state reachable again (true) or lost (false). Reported once per change, not per failed trial. */
  readonly available: boolean;
  readonly mode: StateMode;
  readonly failureMode: StateFailureMode;
  /** The failure that opened the breaker, when known. */
  readonly cause?: unknown;
}

export interface ResilientRateStateStoreOptions {
  /** 'local' (default): continue on per-replica state; 'closed': admit rejects with StateUnavailableError. */
  readonly failureMode?: StateFailureMode;
  /** Replicas sharing the pools; the local fallback enforces each limit / expectedReplicas (at least 1). Default 1. */
  readonly expectedReplicas?: number;
  /** Longest one shared admit may take before it counts as failed and the request falls back. Default 50 ms. */
  readonly timeoutMs?: number;
  /** How long the breaker stays open before one trial admit goes to the shared store again. Default 1000 ms. */
  readonly resetTimeoutMs?: number;
  /** Failure percentage over the rolling window that opens the breaker. Default 50. */
  readonly errorThresholdPercentage?: number;
  /** Admits in the rolling window before the percentage is judged. Default 5. */
  readonly volumeThreshold?: number;
  /** Rolling window of the failure statistics. Default 10 000 ms. */
  readonly rollingWindowMs?: number;
  /** Health changes seen by the local fallback while it decides (the shared store reports its own). Must not throw. */
  readonly onHealthChange?: (change: HealthChange) => void;
  /** Called once when shared state is lost and once when it is back (log it; count it). Must not throw. */
  readonly onTransition?: (transition: StateTransition) => void;
}

/** Local lease ids start with this; shared (Redis) lease ids never contain it (base64url instance id + '.' + base36). */
const LOCAL_LEASE_PREFIX = '~';

interface AdmitContext {
  /** Set once the caller gave up on this shared admit (timeout): a late success must hand its slot back. */
  abandoned: boolean;
}

export class ResilientRateStateStore implements RateStateStore {
  private readonly shared: RateStateStore;
  private readonly local: MemoryRateStateStore;
  private readonly breaker: CircuitBreaker<[AdmitRequest, AdmitContext], AdmitResult>;
  private readonly failureMode: StateFailureMode;
  private readonly timeoutMs: number;
  private readonly onTransition: ((transition: StateTransition) => void) | undefined;
  private available = true;
  private lastFailure: unknown = undefined;
  private fallbacks = 0;

  constructor(shared: RateStateStore, options: ResilientRateStateStoreOptions = {}) {
    this.shared = shared;
    this.failureMode = options.failureMode ?? 'local';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_STATE_TIMEOUT_MS;
    this.onTransition = options.onTransition;
    this.local = new MemoryRateStateStore({
      limitDivisor: options.expectedReplicas ?? 1,
      leasePrefix: LOCAL_LEASE_PREFIX,
      onHealthChange: (change) => {
        if (this.mode === 'local') options.onHealthChange?.(change);
      },
    });
    this.breaker = new CircuitBreaker((request: AdmitRequest, context: AdmitContext) => this.sharedAdmit(request, context), {
      timeout: this.timeoutMs,
      resetTimeout: options.resetTimeoutMs ?? 1_000,
      errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
      volumeThreshold: options.volumeThreshold ?? 5,
      rollingCountTimeout: options.rollingWindowMs ?? 10_000,
      rollingCountBuckets: 10,
      rollingPercentilesEnabled: false,
      name: 'keypool-rate-state',
    });
    this.breaker.on('failure', (error: unknown) => {
      this.lastFailure = error;
    });
    this.breaker.on('open', () => this.transition(false));
    this.breaker.on('close', () => this.transition(true));
  }

  /** For metrics: the breaker around the shared store. */
  get breakerState(): BreakerState {
    if (this.breaker.closed) return 'closed';
    return this.breaker.halfOpen ? 'half-open' : 'open';
  }

  /** For metrics: where decisions are made now. */
  get mode(): StateMode {
    return this.failureMode === 'local' && !this.available ? 'local' : 'shared';
  }

  /** Admits answered by the local fallback or refused (closed mode) because the shared store failed. */
  get fallbackCount(): number {
    return this.fallbacks;
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    const context: AdmitContext = { abandoned: false };
    try {
      return await this.breaker.fire(request, context);
    } catch (error) {
      context.abandoned = true;
      this.fallbacks++;
      if (this.failureMode === 'closed') {
        const unavailable = new StateUnavailableError(`shared rate state unavailable: ${describe(error)}`);
        unavailable.cause = error;
        throw unavailable;
      }
      return this.local.admitNow(request);
    }
  }

  release(pool: string, accountId: string, leaseId: string): void {
    if (leaseId.startsWith(LOCAL_LEASE_PREFIX)) this.local.release(pool, accountId, leaseId);
    else this.shared.release(pool, accountId, leaseId);
  }

  observe(
    pool: string,
    accountId: string,
    observation: Observation,
    nowMs: number,
    releaseLeaseId?: string | null,
    target?: LearnedTarget,
  ): Promise<void> {
    const localLease = releaseLeaseId != null && releaseLeaseId.startsWith(LOCAL_LEASE_PREFIX);
    // The local store always learns too, so a fallback starts with current cooldowns, circuits and invalid holds.
    const local = this.local.observe(pool, accountId, observation, nowMs, localLease ? releaseLeaseId : null, target);
    const sharedLease = releaseLeaseId != null && !localLease ? releaseLeaseId : null;
    // While the breaker is open, writes would only fail; the shared state catches up from later responses. A shared
    // lease still goes back (the store keeps it for Redis's return).
    if (this.breaker.opened) {
      if (sharedLease !== null) this.shared.release(pool, accountId, sharedLease);
      return local;
    }
    return this.shared.observe(pool, accountId, observation, nowMs, sharedLease, target);
  }

  renew(pool: string, accountId: string, leaseId: string, leaseMs: number, nowMs: number): void {
    if (leaseId.startsWith(LOCAL_LEASE_PREFIX)) this.local.renew(pool, accountId, leaseId, leaseMs, nowMs);
    else this.shared.renew(pool, accountId, leaseId, leaseMs, nowMs);
  }

  reconcileTokens(
    pool: string,
    accountId: string,
    leaseId: string,
    admittedAtMs: number,
    deltaTokens: number,
    quotas: readonly QuotaRef[],
    nowMs: number,
    dayBounds?: DayBounds,
  ): Promise<void> {
    // Where the reservation was made: the local fallback for a local lease, else the shared store (a write that
    // fails while Redis is out is lost; the reservation then keeps its estimate, the conservative side).
    if (leaseId.startsWith(LOCAL_LEASE_PREFIX)) return this.local.reconcileTokens(pool, accountId, leaseId, admittedAtMs, deltaTokens, quotas, nowMs, dayBounds);
    if (this.breaker.opened || this.shared.reconcileTokens === undefined) return Promise.resolve();
    return this.shared.reconcileTokens(pool, accountId, leaseId, admittedAtMs, deltaTokens, quotas, nowMs, dayBounds);
  }

  async inspect(pool: string, accountIds: readonly string[], nowMs: number, scopes?: ReadonlyMap<string, string>): Promise<AccountStateView[]> {
    if (this.breaker.opened) return this.local.inspect(pool, accountIds, nowMs, scopes);
    try {
      // Admin/metrics path: more patient than an admit, but still bounded.
      return await withTimeout(this.shared.inspect(pool, accountIds, nowMs, scopes), this.timeoutMs * 20);
    } catch {
      return this.local.inspect(pool, accountIds, nowMs, scopes);
    }
  }

  async resetAccount(pool: string, accountId: string): Promise<void> {
    await this.local.resetAccount(pool, accountId);
    await this.shared.resetAccount?.(pool, accountId);
  }

  async inspectQuota(subject: QuotaSubject, nowMs: number, dayBounds?: DayBounds): Promise<QuotaUsage> {
    if (this.breaker.opened || this.shared.inspectQuota === undefined) return this.local.inspectQuota(subject, nowMs, dayBounds);
    try {
      return await withTimeout(this.shared.inspectQuota(subject, nowMs, dayBounds), this.timeoutMs * 20);
    } catch {
      return this.local.inspectQuota(subject, nowMs, dayBounds);
    }
  }

  async close(): Promise<void> {
    this.breaker.shutdown();
    await Promise.allSettled([this.shared.close(), this.local.close()]);
  }

  private sharedAdmit(request: AdmitRequest, context: AdmitContext): Promise<AdmitResult> {
    return this.shared.admit(request).then((result) => {
      // Timed out from the caller's point of view, but Redis admitted: give the slot back rather than leak it for leaseMs.
      if (context.abandoned && result.ok) this.shared.release(request.pool, result.accountId, result.leaseId);
      return result;
    });
  }

  private transition(available: boolean): void {
    if (available === this.available) return;
    this.available = available;
    if (this.onTransition === undefined) return;
    try {
      this.onTransition({
        available,
        mode: this.mode,
        failureMode: this.failureMode,
        ...(available ? {} : { cause: this.lastFailure }),
      });
    } catch {
      // A failing log callback must not break request handling.
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
