// Admission and health types owned by the core (capacity.ts decides with them); the RateStateStore port in
// src/ports.ts speaks them to every store implementation.
import type { LearnedLimits } from './types.js';

/** One account offered for admission, with the limits keypool enforces itself. */
export interface AdmitCandidate {
  /** Account id (an Account from the snapshot is itself a valid candidate, so the hot path copies nothing). */
  readonly id: string;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  readonly maxConcurrency: number | null;
  /**
   * The account's quota scope (keys of one OpenAI project / Anthropic workspace share one provider limit): provider
   * cooldowns and learned limits are shared by every account of the scope (src/core/learned-state.ts). null/absent =
   * the account is its own scope.
   */
  readonly scope?: string | null;
}

export interface AdmitRequest {
  /** Provider slug; Redis keys of one pool share a hash tag built from it. */
  readonly pool: string;
  /** In strategy order: the store admits the first with capacity. */
  readonly candidates: readonly AdmitCandidate[];
  /** least-loaded: the store reorders candidates by remaining capacity it has learned. */
  readonly leastLoaded: boolean;
  readonly nowMs: number;
  /** How long an in-flight slot is held if its holder never releases it (crashed replica). */
  readonly leaseMs: number;
  /**
   * Request quotas (the client key's, then its tenant's) that must all have room; they are charged together with the
   * account admission or not at all (src/core/quota.ts). Absent or empty = no quota applies.
   */
  readonly quotas?: readonly QuotaSubject[] | undefined;
  /** Calendar days of the quota zone around nowMs, for rpd quotas (see DayBounds). Absent = UTC days. */
  readonly dayBounds?: DayBounds | undefined;
  /**
   * Priority reserve of this request: the fraction of an account's capacity that must remain after admitting it
   * (held back for higher priorities). 0 or absent = any capacity will do.
   */
  readonly reserve?: number | undefined;
  /**
   * The request's model for provider-learned state: the store keeps the provider's limits per (scope, model) for it.
   * The engine passes it only when the provider limits per model (learned-state.ts stateModel); the candidates
   * already serve it (model routing). null/absent = unknown -> one slot per scope.
   */
  readonly model?: string | null;
  /**
   * Estimated tokens of this request (input estimate + max output, src/core/token-estimate.ts), reserved at admission
   * in the account's tpm window (when it has a tpm_limit) and the key's/tenant's token quotas (when they have one),
   * and reconciled with the actual usage later (RateStateStore.reconcileTokens). Absent or 0 = no token accounting.
   */
  readonly tokens?: number | undefined;
}

/** Where an observation's provider-learned state lands: the account's quota scope and the model (see AdmitRequest). */
export interface LearnedTarget {
  readonly scope: string | null;
  readonly model: string | null;
}

export type QuotaScope = 'key' | 'tenant';
/** Which window refused: requests per minute/day, or tokens per minute/day (token quotas, src/core/token-window.ts). */
export type QuotaWindow = 'minute' | 'day' | 'token_minute' | 'token_day';

/**
 * Requests and tokens per minute (sliding WINDOW_MS) and per calendar day of one client key or tenant; null (or an
 * absent token limit) = unlimited. Token limits count only requests admitted with AdmitRequest.tokens.
 */
export interface QuotaSubject {
  readonly scope: QuotaScope;
  readonly id: string;
  readonly rpmLimit: number | null;
  readonly rpdLimit: number | null;
  readonly tpmLimit?: number | null | undefined;
  readonly tpdLimit?: number | null | undefined;
}

/** A quota subject named for a reconcile (which token windows an admission was charged to). */
export interface QuotaRef {
  readonly scope: QuotaScope;
  readonly id: string;
}

/**
 * Four instants b0 < b1 < b2 < b3: the calendar days [b0,b1), [b1,b2), [b2,b3) of the quota time zone around the
 * caller's now. The store picks the day that holds its own clock's now (Redis: the server's TIME), so replicas whose
 * clocks differ slightly still count into the same day.
 */
export type DayBounds = readonly [number, number, number, number];

export type AdmitResult =
  | { readonly ok: true; readonly accountId: string; readonly leaseId: string }
  | {
      readonly ok: false;
      /**
       * exhausted: some account will free up (429); unhealthy: every account's circuit is open or invalid (503);
       * shed: an account had room, but not above this request's priority reserve (429 priority_shed);
       * quota: the key's or tenant's quota is used up (429 quota_exceeded; `limit` says which).
       */
      readonly reason: 'exhausted' | 'unhealthy' | 'shed' | 'quota';
      /** Earliest instant an account (or the quota window) frees up, when known. */
      readonly retryAtMs: number | null;
      /** Set when reason is 'quota': the limit that refused. */
      readonly limit?: { readonly scope: QuotaScope; readonly window: QuotaWindow } | undefined;
    };

export type HealthState = 'healthy' | 'degraded' | 'unhealthy';

/** Live state of one account, for admin stats and metrics. */
export interface AccountStateView {
  readonly accountId: string;
  readonly health: HealthState;
  readonly inFlight: number;
  readonly cooldownUntilMs: number | null;
  readonly circuitOpenUntilMs: number | null;
  readonly requestsInWindow: number;
  readonly invalid: boolean;
  readonly learned: LearnedLimits;
}
