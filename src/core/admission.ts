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
}

export type AdmitResult =
  | { readonly ok: true; readonly accountId: string; readonly leaseId: string }
  | {
      readonly ok: false;
      /** exhausted: some account will free up (429); unhealthy: every account's circuit is open or invalid (503). */
      readonly reason: 'exhausted' | 'unhealthy';
      /** Earliest instant an account frees up, when known. */
      readonly retryAtMs: number | null;
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
