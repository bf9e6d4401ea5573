// Per-account admission and health state machine. Pure: no I/O, no clock (time comes in as nowMs), no logger.
// The memory store runs it directly; the Redis store's Lua scripts (src/stores/redis-scripts.ts) mirror it line for
// line, and one contract suite (test/state/rate-state.contract.ts) holds both to the same behaviour.
//
// The functions mutate the AccountState they are given (that is the point of a state machine) but touch nothing else.
import type { LearnedLimits } from './types.js';
import type { AccountStateView, AdmitCandidate, AdmitRequest, AdmitResult, HealthState } from './admission.js';
import { EMPTY_LIMITS } from './providers/limits.js';
import type { LearnedState } from './learned-state.js';
import { RequestLog, WINDOW_MS } from './request-log.js';
import { reservedTokens, TokenLog, tokenBlock } from './token-window.js';

export { RequestLog, WINDOW_MS };

/** Consecutive server errors after which the circuit opens (1..N-1 only degrade the account). */
export const UNHEALTHY_AFTER_FAILURES = 3;
/** First circuit-open period; doubles with each consecutive re-open. */
export const CIRCUIT_BASE_MS = 5_000;
/** Upper bound of one circuit-open period. */
export const CIRCUIT_MAX_MS = 300_000;
/** Exponent cap for the back-off: 5 s * 2^6 = 320 s already exceeds CIRCUIT_MAX_MS, so counting further is pointless. */
export const MAX_OPEN_COUNT = 6;
/** Keeps the failure counter a small integer on a long outage (only >= UNHEALTHY_AFTER_FAILURES matters). */
export const FAILURE_COUNT_CAP = 1_000;
/** Cooldown after a 429 whose response carried no retry-after/reset hint. */
/**
 * How long the shared state keeps an account out after a 401/403 (invalid_credential) or exhausted credit
 * (quota_exhausted). The durable source of truth is the account's status in the catalog, which the engine sets
 * to invalid/disabled; this hold only has to cover the time until every replica's snapshot drops the account (or until
 * PostgreSQL is back, when the write is buffered). Bounded so that an operator who re-enables the account is not
 * locked out for longer than this even if nobody calls the store's resetAccount().
 */
export const INVALID_HOLD_MS = 3_600_000;
/** Requests remembered for accounts without an rpm_limit (only for admin statistics). */
export const UNLIMITED_LOG_CAP = 10_000;

export type BlockReason = 'cooldown' | 'circuit_open' | 'invalid' | 'rpm' | 'tpm' | 'concurrency' | 'provider_requests';

export type Capacity =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly reason: BlockReason;
      /** When this account frees up; null = unknown (a slot frees when some in-flight request ends, or never). */
      readonly freeAtMs: number | null;
    };

export type MutableLearnedLimits = { -readonly [K in keyof LearnedLimits]: LearnedLimits[K] };

/**
 * Everything keypool knows about one upstream account. Times are epoch ms; 0 means "not set". Its cooldown and learned
 * limits are the account's own LearnedState; with a quota scope or a per-model request, a shared slot (learned-state.ts)
 * holds them instead and the functions below take it as `slot`.
 */
export interface AccountState extends LearnedState {
  /** Admissions within the last WINDOW_MS (bounded by the rpm limit, or UNLIMITED_LOG_CAP). */
  readonly requestLog: RequestLog;
  /**
   * Tokens reserved (then reconciled) by the admissions of the last WINDOW_MS that counted tokens against the account's
   * tpm_limit (src/core/token-window.ts); empty when the account has none or no request carried tokens.
   */
  readonly tokenLog: TokenLog;
  /** In-flight slots: leaseId -> expiresAtMs. A lease not released by then no longer counts (crashed holder). */
  readonly leases: Map<string, number>;
  cooldownUntilMs: number;
  /** healthy: last server answer fine; degraded: 1..2 consecutive 5xx; unhealthy: circuit open or half-open. */
  health: HealthState;
  consecutiveFailures: number;
  /** 0 = circuit closed; > now = open; <= now (and not 0) = half-open: one probe may go through. */
  circuitOpenUntilMs: number;
  /** Consecutive openings without a success in between; the exponent of the back-off (capped at MAX_OPEN_COUNT). */
  openCount: number;
  /** The lease of the half-open probe; while it is in flight nobody else is admitted. */
  halfOpenProbeLeaseId: string | null;
  /** Skipped until then after a 401/403 or exhausted credit (see INVALID_HOLD_MS). */
  invalidUntilMs: number;
  readonly learned: MutableLearnedLimits;
}

export function newAccountState(): AccountState {
  return {
    requestLog: new RequestLog(),
    tokenLog: new TokenLog(),
    leases: new Map(),
    cooldownUntilMs: 0,
    health: 'healthy',
    consecutiveFailures: 0,
    circuitOpenUntilMs: 0,
    openCount: 0,
    halfOpenProbeLeaseId: null,
    invalidUntilMs: 0,
    learned: { ...EMPTY_LIMITS },
  };
}

/** A limit divided among `divisor` replicas (local fallback mode): rounded down, at least 1; null and 0 stay. */
export function divideLimit(limit: number | null, divisor: number): number | null {
  if (limit === null || limit <= 0 || divisor <= 1) return limit;
  return Math.max(1, Math.floor(limit / divisor));
}

/** Circuit open back-off for the n-th consecutive opening (n from 0). */
export function circuitBackoffMs(openCount: number): number {
  return Math.min(CIRCUIT_BASE_MS * 2 ** Math.min(openCount, MAX_OPEN_COUNT), CIRCUIT_MAX_MS);
}

/** Forgets admissions older than the window and leases past their expiry. Idempotent. */
export function pruneState(state: AccountState, nowMs: number): void {
  state.requestLog.prune(nowMs - WINDOW_MS);
  state.tokenLog.prune(nowMs - WINDOW_MS);
  if (state.leases.size > 0) {
    for (const [leaseId, expiresAtMs] of state.leases) {
      if (expiresAtMs <= nowMs) state.leases.delete(leaseId);
    }
  }
}

const OK: Capacity = { ok: true };

function blocked(reason: BlockReason, freeAtMs: number | null): Capacity {
  return { ok: false, reason, freeAtMs };
}

function probeInFlight(state: AccountState): boolean {
  return state.halfOpenProbeLeaseId !== null && state.leases.has(state.halfOpenProbeLeaseId);
}

/** Learned "remaining" is only meaningful until its reset; null reset = provider did not say, keep it. */
function learnedActive(remaining: number | null, resetAtMs: number | null, nowMs: number): remaining is number {
  return remaining !== null && (resetAtMs === null || resetAtMs > nowMs);
}

/**
 * Can `candidate` take one more request (of `tokens` estimated tokens) now? Checks in order: invalid, circuit,
 * cooldown, provider-reported request and token budgets, own RPM window, own TPM window (only for a request that
 * counts tokens), own concurrency. Prunes expired entries first.
 */
export function capacityOf(state: AccountState, candidate: AdmitCandidate, nowMs: number, slot: LearnedState = state, tokens = 0): Capacity {
  pruneState(state, nowMs);
  if (state.invalidUntilMs > nowMs) return blocked('invalid', null);
  if (state.circuitOpenUntilMs !== 0) {
    if (state.circuitOpenUntilMs > nowMs) return blocked('circuit_open', state.circuitOpenUntilMs);
    if (probeInFlight(state)) return blocked('circuit_open', null);
  }
  if (slot.cooldownUntilMs > nowMs) return blocked('cooldown', slot.cooldownUntilMs);
  const learned = slot.learned;
  // A reset instant is required to block: "0 remaining, resets at an unknown time" must not lock an account forever.
  if (learned.requestsRemaining !== null && learned.requestsRemaining <= 0 && learned.requestsResetAtMs !== null && learned.requestsResetAtMs > nowMs) {
    return blocked('provider_requests', learned.requestsResetAtMs);
  }
  if (learned.tokensRemaining !== null && learned.tokensRemaining <= 0 && learned.tokensResetAtMs !== null && learned.tokensResetAtMs > nowMs) {
    return blocked('tpm', learned.tokensResetAtMs);
  }
  const rpm = candidate.rpmLimit;
  if (rpm !== null && state.requestLog.size >= rpm) {
    const oldest = state.requestLog.oldest();
    return blocked('rpm', Number.isNaN(oldest) ? null : oldest + WINDOW_MS);
  }
  const tpm = candidate.tpmLimit;
  if (tokens > 0 && tpm !== null) {
    const freeAtMs = tokenBlock(state.tokenLog, tpm, tokens, nowMs);
    if (freeAtMs !== undefined) return blocked('tpm', freeAtMs);
  }
  const maxConcurrency = candidate.maxConcurrency;
  if (maxConcurrency !== null && state.leases.size >= maxConcurrency) return blocked('concurrency', null);
  return OK;
}

/**
 * Remaining capacity as a fraction in [0, 1]: the tightest of the provider-reported request and token budgets and the
 * own RPM window and concurrency. 1 = idle or nothing known. Call on a pruned state (capacityOf/pruneState).
 */
export function remainingScore(state: AccountState, candidate: AdmitCandidate, nowMs: number, slot: LearnedState = state, tokens = 0): number {
  let score = 1;
  const learned = slot.learned;
  if (learnedActive(learned.requestsRemaining, learned.requestsResetAtMs, nowMs)) {
    score = Math.min(score, fraction(learned.requestsRemaining, learned.requestsLimit ?? candidate.rpmLimit));
  }
  if (learnedActive(learned.tokensRemaining, learned.tokensResetAtMs, nowMs)) {
    score = Math.min(score, fraction(learned.tokensRemaining, learned.tokensLimit ?? candidate.tpmLimit));
  }
  if (candidate.rpmLimit !== null) score = Math.min(score, fraction(candidate.rpmLimit - state.requestLog.size, candidate.rpmLimit));
  if (tokens > 0 && candidate.tpmLimit !== null) score = Math.min(score, fraction(candidate.tpmLimit - state.tokenLog.sum, candidate.tpmLimit));
  if (candidate.maxConcurrency !== null) {
    score = Math.min(score, fraction(candidate.maxConcurrency - state.leases.size, candidate.maxConcurrency));
  }
  return score;
}

/** remaining/limit clamped to [0, 1]; without a usable limit only "nothing left" is informative. */
function fraction(remaining: number, limit: number | null): number {
  if (remaining <= 0) return 0;
  if (limit === null || limit <= 0) return 1;
  return remaining >= limit ? 1 : remaining / limit;
}

/**
 * Priority reserve check on an account capacityOf let through: undefined when admitting one more request still leaves
 * at least `reserve` of every capacity dimension that takes part (provider-reported requests and tokens with a known
 * reset, own RPM window and concurrency, own TPM window for a request that counts tokens; see reserveApplies), the
 * request's own unit counted for requests, window and concurrency. Otherwise the instant the tightest-reset dimension
 * below the reserve resets (the latest of them), or null when one of them frees at an unknown instant (concurrency, a
 * provider window without a reset). Call on a pruned state.
 */
export function reserveShortfall(
  state: AccountState,
  candidate: AdmitCandidate,
  nowMs: number,
  reserve: number,
  slot: LearnedState = state,
  tokens = 0,
): number | null | undefined {
  let freeAtMs: number | null | undefined;
  const learned = slot.learned;
  const rr = learned.requestsRemaining;
  const rra = learned.requestsResetAtMs;
  if (rr !== null && rra !== null && rra > nowMs) {
    const limit = learned.requestsLimit ?? candidate.rpmLimit;
    if (reserveApplies(limit, reserve) && fraction(rr - 1, limit) < reserve) freeAtMs = laterReset(freeAtMs, rra);
  }
  const tr = learned.tokensRemaining;
  const tra = learned.tokensResetAtMs;
  if (tr !== null && tra !== null && tra > nowMs) {
    const limit = learned.tokensLimit ?? candidate.tpmLimit;
    if (reserveApplies(limit, reserve) && fraction(tr, limit) < reserve) freeAtMs = laterReset(freeAtMs, tra);
  }
  const rpm = candidate.rpmLimit;
  if (reserveApplies(rpm, reserve) && fraction(rpm - state.requestLog.size - 1, rpm) < reserve) {
    const oldest = state.requestLog.oldest();
    freeAtMs = laterReset(freeAtMs, Number.isNaN(oldest) ? null : oldest + WINDOW_MS);
  }
  // The own tpm window, for a request that counts tokens (its own estimate counted): back above the reserve once
  // enough of the oldest tokens left for sum + tokens <= tpm x (1 - reserve).
  const tpm = candidate.tpmLimit;
  if (tokens > 0 && reserveApplies(tpm, reserve) && fraction(tpm - state.tokenLog.sum - tokens, tpm) < reserve) {
    freeAtMs = laterReset(freeAtMs, state.tokenLog.freeAtMs(tokens, tpm * (1 - reserve)));
  }
  const maxConcurrency = candidate.maxConcurrency;
  if (reserveApplies(maxConcurrency, reserve) && fraction(maxConcurrency - state.leases.size - 1, maxConcurrency) < reserve) freeAtMs = null;
  return freeAtMs;
}

/**
 * A dimension takes part in the reserve only with a known limit whose reserved share is at least one whole unit: a
 * reserve of 10 % of one concurrency slot would otherwise keep every low-priority request off a single-slot account
 * for good. (Provider-reported budgets also need a known reset: "0 left, resets at an unknown time" must not park an
 * account for low priorities forever, as capacityOf reasons too.)
 */
function reserveApplies(limit: number | null, reserve: number): limit is number {
  return limit !== null && limit * reserve >= 1;
}

/** The later of two reset instants; null (unknown) wins: the dimension frees at an unknown instant. */
function laterReset(current: number | null | undefined, resetAtMs: number | null): number | null {
  if (current === null || resetAtMs === null) return null;
  return current === undefined ? resetAtMs : Math.max(current, resetAtMs);
}

/**
 * The LearnedState a candidate's admission reads and charges (its scope's or model's slot, learned-state.ts); absent =
 * the account's own state, as before scopes and models.
 */
export type SlotOf = (candidate: AdmitCandidate, state: AccountState) => LearnedState;

const OWN_SLOT: SlotOf = (_candidate, state) => state;

/** Candidate indexes by descending remainingScore (of their slots: like is compared with like); ties keep strategy order. */
export function leastLoadedOrder(
  stateOf: (accountId: string) => AccountState,
  candidates: readonly AdmitCandidate[],
  nowMs: number,
  slotOf: SlotOf = OWN_SLOT,
  tokens = 0,
): number[] {
  const scores: number[] = new Array<number>(candidates.length);
  const order: number[] = new Array<number>(candidates.length);
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i] as AdmitCandidate;
    const state = stateOf(candidate.id);
    pruneState(state, nowMs);
    scores[i] = remainingScore(state, candidate, nowMs, slotOf(candidate, state), tokens);
    order[i] = i;
  }
  order.sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
  return order;
}

/** Takes one slot of `state` (and `tokens` of its tpm window) for `leaseId`. Call only right after capacityOf said ok. */
export function recordAdmission(
  state: AccountState,
  candidate: AdmitCandidate,
  leaseId: string,
  nowMs: number,
  leaseMs: number,
  slot: LearnedState = state,
  tokens = 0,
): void {
  state.requestLog.push(nowMs, candidate.rpmLimit !== null ? Math.max(candidate.rpmLimit, 1) : UNLIMITED_LOG_CAP);
  state.leases.set(leaseId, nowMs + leaseMs);
  // capacityOf only lets a request through an elapsed circuit when no probe is in flight: this one is the probe.
  if (state.circuitOpenUntilMs !== 0) state.halfOpenProbeLeaseId = leaseId;
  const learned = slot.learned;
  // Count our own request against the provider's budget until its next response tells the truth again.
  if (learnedActive(learned.requestsRemaining, learned.requestsResetAtMs, nowMs) && learned.requestsRemaining > 0) {
    learned.requestsRemaining -= 1;
  }
  if (tokens > 0) {
    if (candidate.tpmLimit !== null) state.tokenLog.add(leaseId, nowMs, tokens);
    // The reservation counts against the provider's reported token budget too, until its next response.
    if (learnedActive(learned.tokensRemaining, learned.tokensResetAtMs, nowMs) && learned.tokensRemaining > 0) {
      learned.tokensRemaining = Math.max(0, learned.tokensRemaining - tokens);
    }
  }
}

/**
 * Reconcile: moves admission `leaseId`'s reserved tokens by deltaTokens (actual - reserved) where it stands in the
 * account's tpm window. An admission already out of the window (or never charged to it) changes nothing.
 */
export function reconcileAccountTokens(state: AccountState, leaseId: string, deltaTokens: number, nowMs: number): void {
  state.tokenLog.prune(nowMs - WINDOW_MS);
  state.tokenLog.adjust(leaseId, deltaTokens);
}

/**
 * Admits the first candidate with capacity (after reordering by remaining capacity for least-loaded) whose capacity
 * after this admission stays at or above the request's priority reserve, and records the admission under `leaseId`.
 * When some candidate had capacity but only within the reserve: 'shed' (retryAtMs: the earliest such candidate's
 * reserveShortfall instant, null when unknown). When none has capacity: 'unhealthy' if every candidate is invalid or behind an open
 * circuit (503), else 'exhausted' (429). retryAtMs is the earliest instant a non-invalid candidate frees up, or null
 * when any of them frees at an unknown instant (in-flight slot, probe in flight) or none ever will by itself.
 */
export function admitFirst(
  stateOf: (accountId: string) => AccountState,
  request: AdmitRequest,
  leaseId: string,
  slotOf: SlotOf = OWN_SLOT,
): AdmitResult {
  const candidates = request.candidates;
  const nowMs = request.nowMs;
  const tokens = reservedTokens(request.tokens);
  const order = request.leastLoaded && candidates.length > 1 ? leastLoadedOrder(stateOf, candidates, nowMs, slotOf, tokens) : null;
  const reserve = request.reserve ?? 0;
  let allUnhealthy = true;
  let unknownFreeAt = false;
  let retryAtMs = Number.POSITIVE_INFINITY;
  // Accounts with room, but not above this request's reserve: earliest instant one of them is back above it.
  let shed = false;
  let shedAtMs = Number.POSITIVE_INFINITY;
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[order === null ? i : (order[i] as number)] as AdmitCandidate;
    const state = stateOf(candidate.id);
    const slot = slotOf(candidate, state);
    const capacity = capacityOf(state, candidate, nowMs, slot, tokens);
    if (capacity.ok) {
      if (reserve > 0) {
        const shortfall = reserveShortfall(state, candidate, nowMs, reserve, slot, tokens);
        if (shortfall !== undefined) {
          shed = true;
          if (shortfall !== null && shortfall < shedAtMs) shedAtMs = shortfall;
          continue;
        }
      }
      recordAdmission(state, candidate, leaseId, nowMs, request.leaseMs, slot, tokens);
      return { ok: true, accountId: candidate.id, leaseId };
    }
    if (capacity.reason === 'invalid') continue;
    if (capacity.reason !== 'circuit_open') allUnhealthy = false;
    if (capacity.freeAtMs === null) unknownFreeAt = true;
    else if (capacity.freeAtMs < retryAtMs) retryAtMs = capacity.freeAtMs;
  }
  if (shed) return { ok: false, reason: 'shed', retryAtMs: shedAtMs === Number.POSITIVE_INFINITY ? null : shedAtMs };
  const known = !unknownFreeAt && retryAtMs !== Number.POSITIVE_INFINITY;
  return { ok: false, reason: allUnhealthy ? 'unhealthy' : 'exhausted', retryAtMs: known ? retryAtMs : null };
}

/** Returns a slot. Idempotent: an unknown or already released lease is ignored. */
export function releaseLease(state: AccountState, leaseId: string): void {
  state.leases.delete(leaseId);
}

/**
 * Moves a live lease's expiry to `expiresAtMs` (its holder is still running). A lease already released or expired is
 * not brought back: its slot may have been given to someone else meanwhile.
 */
export function renewLease(state: AccountState, leaseId: string, expiresAtMs: number, nowMs: number): void {
  const current = state.leases.get(leaseId);
  if (current === undefined || current <= nowMs) return;
  if (expiresAtMs > current) state.leases.set(leaseId, expiresAtMs);
}

/** The admin's view of an account; `slot` = where its cooldown and learned limits live (its quota scope's slot). */
export function viewOf(accountId: string, state: AccountState, nowMs: number, slot: LearnedState = state): AccountStateView {
  pruneState(state, nowMs);
  return {
    accountId,
    health: state.health,
    inFlight: state.leases.size,
    cooldownUntilMs: slot.cooldownUntilMs > nowMs ? slot.cooldownUntilMs : null,
    circuitOpenUntilMs: state.circuitOpenUntilMs > nowMs ? state.circuitOpenUntilMs : null,
    requestsInWindow: state.requestLog.size,
    invalid: state.invalidUntilMs > nowMs,
    learned: { ...slot.learned },
  };
}
