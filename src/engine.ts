// Wires one request through the current snapshot, the pure core and the rate state. The only thing adapters call.
import { authorizeRequest, buildAllow, denyForAdmission, type Authorized } from './core/request.js';
import { deny, inProviderShape } from './core/errors.js';
import { orderCandidates } from './core/select.js';
import { observeResponse } from './core/response.js';
import type { Account, Deny, HeaderBag, ObservationOutcome, RequestView } from './core/types.js';
import {
  StateUnavailableError,
  type AdmitResult,
  type Clock,
  type DecisionEngine,
  type RateStateStore,
  type RequestOutcome,
  type SnapshotSource,
  type Ticket,
} from './ports.js';
import type { WriteBuffer } from './stores/write-buffer.js';
import type { Logger } from './log.js';

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
  /** Uniform [0,1) source for weighted-random; injectable for tests. */
  readonly randomUnit?: () => number;
  /** Observes every decision (metrics). Must not throw. */
  readonly onDecision?: (outcome: 'allow' | Deny['code'], elapsedMs: number) => void;
  /** Observes what each upstream response said about its account (metrics). Must not throw. */
  readonly onObservation?: (ticket: Ticket, outcome: ObservationOutcome) => void;
}

const NOT_LOADED = deny('keypool_unavailable', { message: 'keypool has not loaded its configuration yet' });
const EMPTY_POOL = deny('no_healthy_account', { message: 'the provider pool has no active account' });
const STATE_UNAVAILABLE = deny('state_unavailable');
const ACTOR_ENGINE = 'keypool';
/** Accounts offered to the rate state per attempt; a second attempt offers the whole pool when all are blocked. */
const CANDIDATE_WINDOW = 16;

export class Engine implements DecisionEngine {
  private roundRobinCursor = 0;
  private readonly randomUnit: () => number;

  constructor(private readonly options: EngineOptions) {
    this.randomUnit = options.randomUnit ?? Math.random;
  }

  isReady(): boolean {
    return this.options.snapshots.current() !== null;
  }

  async decide(view: RequestView): Promise<RequestOutcome> {
    // Decision latency is measured on the monotonic sub-millisecond clock; startedAtMs is the wall-clock instant
    // the rules evaluate (expiry, grace windows, cooldowns) and may be a test clock.
    const startedAt = performance.now();
    const startedAtMs = this.options.clock.nowMs();
    const snapshot = this.options.snapshots.current();
    if (!snapshot) return this.denied(NOT_LOADED, view, startedAtMs, startedAt);

    const authorized = authorizeRequest(view, snapshot, startedAtMs, view.keyHeaders ?? this.options.keyHeaders);
    if (authorized.kind === 'deny') return this.denied(authorized, view, startedAtMs, startedAt);

    const pool = authorized.pool;
    if (pool.accounts.length === 0) return this.denied(EMPTY_POOL, view, startedAtMs, startedAt);
    const strategy = view.strategyOverride ?? pool.strategy;
    const cursor = this.roundRobinCursor++;
    const window = orderCandidates(pool, strategy, cursor, this.randomUnit, CANDIDATE_WINDOW);
    let admitted = await this.admit(authorized, window, strategy === 'least-loaded', startedAtMs);
    if ('kind' in admitted && admitted.code !== 'state_unavailable' && window.length < pool.accounts.length) {
      // Every account of the window is blocked: the rest of the pool decides between an allow and a 429/503.
      const everyAccount = orderCandidates(pool, strategy, cursor, this.randomUnit);
      admitted = await this.admit(authorized, everyAccount, strategy === 'least-loaded', startedAtMs);
    }
    if ('kind' in admitted) return this.denied(admitted, view, startedAtMs, startedAt);
    const { account, leaseId } = admitted;
    this.options.writes.touchKey(authorized.key.id, startedAtMs);
    this.options.onDecision?.('allow', performance.now() - startedAt);
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
      },
    };
  }

  observe(ticket: Ticket, status: number, headers: HeaderBag): void {
    try {
      const nowMs = this.options.clock.nowMs();
      const dialect = this.options.snapshots.current()?.pools.get(ticket.pool)?.dialect ?? 'none';
      const observation = observeResponse(dialect, status, headers, nowMs, this.options.defaultCooldownMs);
      this.options.state.observe(ticket.pool, ticket.accountId, observation, nowMs);
      this.options.writes.recordUsage(ticket.accountId, nowMs, observation.outcome, nowMs - ticket.startedAtMs);
      this.options.onObservation?.(ticket, observation.outcome);
      const account = { pool: ticket.pool, accountId: ticket.accountId, account: ticket.accountName, status };
      if (observation.outcome === 'invalid_credential') {
        this.options.writes.invalidateAccount(ticket.accountId, `upstream answered ${status}`, ACTOR_ENGINE);
        this.options.logger.warn(account, 'account invalidated: upstream rejected its credential');
      } else if (observation.outcome === 'rate_limited') {
        this.options.logger.info(
          { ...account, cooldownUntil: new Date(observation.cooldownUntilMs ?? nowMs).toISOString() },
          'account cooling down',
        );
      }
    } catch (error) {
      this.options.logger.error({ err: error, pool: ticket.pool }, 'failed to observe an upstream response');
    }
  }

  release(ticket: Ticket): void {
    try {
      this.options.state.release(ticket.pool, ticket.accountId, ticket.leaseId);
    } catch (error) {
      this.options.logger.error({ err: error, pool: ticket.pool }, 'failed to release an in-flight slot');
    }
  }

  private async admit(
    authorized: Authorized,
    ordered: readonly Account[],
    leastLoaded: boolean,
    nowMs: number,
  ): Promise<{ account: Account; leaseId: string } | Deny> {
    let result: AdmitResult;
    try {
      result = await this.options.state.admit({
        pool: authorized.pool.slug,
        candidates: ordered,
        leastLoaded,
        nowMs,
        leaseMs: this.options.leaseMs,
      });
    } catch (error) {
      if (error instanceof StateUnavailableError) return STATE_UNAVAILABLE;
      throw error;
    }
    if (!result.ok) return denyForAdmission(result.reason, result.retryAtMs, nowMs);
    const admittedId = result.accountId;
    const account = ordered.find((candidate) => candidate.id === admittedId);
    if (!account) throw new Error('rate state admitted an account that was not offered');
    return { account, leaseId: result.leaseId };
  }

  private denied(denial: Deny, view: RequestView, startedAtMs: number, startedAt: number): RequestOutcome {
    if (denial.audit) {
      this.options.writes.audit({
        keyId: denial.audit.keyId,
        action: denial.audit.action,
        actor: ACTOR_ENGINE,
        clientIp: view.clientAddress,
        metadata: { provider: view.provider, code: denial.code },
        at: new Date(startedAtMs),
      });
    }
    this.options.logger.info(
      { code: denial.code, status: denial.status, provider: view.provider, keyId: denial.audit?.keyId },
      'request denied',
    );
    this.options.onDecision?.(denial.code, performance.now() - startedAt);
    // Answer in the route provider's error shape, so its SDK raises its own exception class (core/errors.ts).
    const dialect = this.options.snapshots.current()?.pools.get(view.provider)?.dialect;
    return { decision: inProviderShape(denial, dialect), ticket: null };
  }
}
