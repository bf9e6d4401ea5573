// What an upstream answer does to an account's state (the other half of capacity.ts, which decides admission): the
// provider's reported limits merged in, a 429's cooldown, a rejected key's hold, the circuit for server errors, and
// the operator's reset. Pure: state, observation and the instant in; the state mutated.
import type { LearnedLimits, Observation } from './types.js';
import {
  type AccountState,
  circuitBackoffMs,
  FAILURE_COUNT_CAP,
  INVALID_HOLD_MS,
  MAX_OPEN_COUNT,
  type MutableLearnedLimits,
  UNHEALTHY_AFTER_FAILURES,
} from './capacity.js';
import type { LearnedState } from './learned-state.js';
import { EMPTY_LIMITS } from './providers/limits.js';
import { DEFAULT_COOLDOWN_MS } from './response.js';

/** Folds the provider's reported limits in: reported fields replace, unreported (null) fields keep what we knew. */
export function mergeLearned(into: MutableLearnedLimits, from: LearnedLimits): void {
  if (from.requestsLimit !== null) into.requestsLimit = from.requestsLimit;
  if (from.requestsRemaining !== null) into.requestsRemaining = from.requestsRemaining;
  if (from.requestsResetAtMs !== null) into.requestsResetAtMs = from.requestsResetAtMs;
  if (from.tokensLimit !== null) into.tokensLimit = from.tokensLimit;
  if (from.tokensRemaining !== null) into.tokensRemaining = from.tokensRemaining;
  if (from.tokensResetAtMs !== null) into.tokensResetAtMs = from.tokensResetAtMs;
}

function openCircuit(state: AccountState, nowMs: number): void {
  state.circuitOpenUntilMs = nowMs + circuitBackoffMs(state.openCount);
  state.openCount = Math.min(state.openCount + 1, MAX_OPEN_COUNT);
  state.health = 'unhealthy';
  state.halfOpenProbeLeaseId = null;
}

function recordServerFailure(state: AccountState, nowMs: number): void {
  state.consecutiveFailures = Math.min(state.consecutiveFailures + 1, FAILURE_COUNT_CAP);
  if (state.circuitOpenUntilMs !== 0) {
    // Half-open: the probe (or a straggler answering after the open period) failed: reopen, longer.
    // Still open: a request admitted before the circuit opened failed late; that changes nothing.
    if (state.circuitOpenUntilMs <= nowMs) openCircuit(state, nowMs);
    return;
  }
  if (state.consecutiveFailures >= UNHEALTHY_AFTER_FAILURES) openCircuit(state, nowMs);
  else state.health = 'degraded';
}

/**
 * Does applyObservation write anything into `slot`? A 429 (its cooldown) or any reported limit does; every other
 * outcome only moves the account's own state. A store keeps a shared slot only once something was written into it
 * (OBSERVE_LUA creates a slot key only by setting one of its fields), so an observation for a model nothing was
 * learned about (a 404, a 200 without rate-limit headers) leaves no slot behind.
 */
export function observationWritesSlot(observation: Observation): boolean {
  if (observation.outcome === 'rate_limited') return true;
  const l = observation.learned;
  return (
    l.requestsLimit !== null ||
    l.requestsRemaining !== null ||
    l.requestsResetAtMs !== null ||
    l.tokensLimit !== null ||
    l.tokensRemaining !== null ||
    l.tokensResetAtMs !== null
  );
}

/**
 * Folds one upstream response into the account:
 * - success: failures reset, circuit closed, back-off reset (the half-open probe succeeded, or simply any success:
 *   observations carry no lease id, and a 2xx is proof the account works);
 * - rate_limited: cooldown until max(existing, observed, or now + DEFAULT_COOLDOWN_MS without a hint);
 * - invalid_credential / quota_exhausted: held out for INVALID_HOLD_MS (both mean "do not retry this key"; credit
 *   exhaustion is not a window that resets by itself, so it is not a cooldown);
 * - server_error: 1..2 consecutive -> degraded, 3 -> circuit open CIRCUIT_BASE_MS * 2^openCount (capped), half-open
 *   after that with one probe; a failing probe reopens with the next back-off;
 * - client_error: the request's fault, health unchanged.
 * Learned limits are merged for every outcome. Cooldown and learned limits go to `slot` (the request's scope/model
 * slot, learned-state.ts); health, circuit and invalid hold always stay with the account.
 */
export function applyObservation(state: AccountState, observation: Observation, nowMs: number, slot: LearnedState = state): void {
  mergeLearned(slot.learned, observation.learned);
  switch (observation.outcome) {
    case 'success':
      state.consecutiveFailures = 0;
      state.health = 'healthy';
      state.circuitOpenUntilMs = 0;
      state.openCount = 0;
      state.halfOpenProbeLeaseId = null;
      return;
    case 'rate_limited':
      slot.cooldownUntilMs = Math.max(slot.cooldownUntilMs, observation.cooldownUntilMs ?? nowMs + DEFAULT_COOLDOWN_MS);
      return;
    case 'invalid_credential':
    case 'quota_exhausted':
      state.invalidUntilMs = Math.max(state.invalidUntilMs, nowMs + INVALID_HOLD_MS);
      return;
    case 'server_error':
      recordServerFailure(state, nowMs);
      return;
    case 'client_error':
      return;
  }
}

/**
 * Forgets health, cooldown, invalidity and the provider's learned limits (an operator re-enabled the account: a
 * learned "0 remaining until tomorrow" would otherwise keep it parked); keeps keypool's own windows and leases.
 */
export function resetHealth(state: AccountState): void {
  Object.assign(state.learned, EMPTY_LIMITS);
  state.cooldownUntilMs = 0;
  state.health = 'healthy';
  state.consecutiveFailures = 0;
  state.circuitOpenUntilMs = 0;
  state.openCount = 0;
  state.halfOpenProbeLeaseId = null;
  state.invalidUntilMs = 0;
}
