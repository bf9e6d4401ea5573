// Per-replica rate state: the embedded default, and the fallback when shared Redis state is unreachable.
// All the rules live in src/core/capacity.ts; this file only keeps the states and hands out lease ids.
import { applyObservation, observationWritesSlot, resetHealth } from '../core/account-observation.js';
import { type AccountState, reconcileAccountTokens, divideLimit, newAccountState, releaseLease, renewLease, viewOf, WINDOW_MS } from '../core/capacity.js';
import { admitWithQuotas, newQuotaState, pickDay, reconcileQuotaTokens, utcDayBounds, type QuotaState } from '../core/quota.js';
import {
  learnedSlot,
  MAX_MODELS_PER_OWNER,
  MODEL_SLOT_MIN_TTL_MS,
  newLearnedState,
  slotRelevantUntilMs,
  type LearnedSlot,
  type LearnedState,
} from '../core/learned-state.js';
import type { Observation } from '../core/types.js';
import type {
  AccountStateView,
  AdmitCandidate,
  AdmitRequest,
  AdmitResult,
  DayBounds,
  HealthChange,
  LearnedTarget,
  QuotaRef,
  QuotaSubject,
  QuotaUsage,
  RateStateStore,
} from '../ports.js';

export interface MemoryRateStateStoreOptions {
  /**
   * Divide every rpm/tpm/concurrency limit by this (rounded down, at least 1). The local fallback sets it to the
   * expected number of replicas so that N replicas counting alone stay within the shared limit. Default 1.
   */
  readonly limitDivisor?: number;
  /**
   * Upper bound on tracked accounts (safety net: the config bounds the pools, but ids of deleted accounts would
   * otherwise stay forever). When exceeded, the longest-tracked idle account is forgotten. Default 100 000.
   */
  readonly maxAccounts?: number;
  /** Prefix of the lease ids this store hands out (lets a wrapper route a release to the store that issued it). */
  readonly leasePrefix?: string;
  /** Called when an observation moves an account's health (circuit opened or closed). Must not throw. */
  readonly onHealthChange?: (change: HealthChange) => void;
}

const DEFAULT_MAX_ACCOUNTS = 100_000;
/** Memory writes are done when observe() returns: every caller of this replica sees them at once. */
const COMMITTED: Promise<void> = Promise.resolve();

export class MemoryRateStateStore implements RateStateStore {
  private readonly pools = new Map<string, Map<string, AccountState>>();
  /** Quota usage by scope, then id (no key string built per request); bounded like the accounts (cleared past maxAccounts). */
  private readonly quotas = { key: new Map<string, QuotaState>(), tenant: new Map<string, QuotaState>() };
  private readonly limitDivisor: number;
  private readonly maxAccounts: number;
  private readonly leasePrefix: string;
  private readonly onHealthChange: ((change: HealthChange) => void) | undefined;
  /**
   * Shared learned slots (src/core/learned-state.ts) by pool, then owner (`s:<scope>` / `a:<accountId>`), then model
   * ('' = every model). A slot is stored only once an observation writes into it (as a Redis slot key exists only
   * then). At most MAX_MODELS_PER_OWNER models per owner (a new one first makes the owner's slots whose relevance
   * ended go, else the least recently written) and maxAccounts owners in all (the first-tracked owner goes).
   */
  private readonly slots = new Map<string, Map<string, Map<string, LearnedState>>>();
  private slotOwners = 0;
  private tracked = 0;
  private leaseSeq = 0;

  constructor(options: MemoryRateStateStoreOptions = {}) {
    this.limitDivisor = Math.max(1, Math.floor(options.limitDivisor ?? 1));
    this.maxAccounts = Math.max(1, options.maxAccounts ?? DEFAULT_MAX_ACCOUNTS);
    this.leasePrefix = options.leasePrefix ?? 'm';
    this.onHealthChange = options.onHealthChange;
  }

  admit(request: AdmitRequest): Promise<AdmitResult> {
    return Promise.resolve(this.admitNow(request));
  }

  /** Synchronous admit (the resilient wrapper's fallback path uses it directly). */
  admitNow(request: AdmitRequest): AdmitResult {
    const pool = this.poolStates(request.pool);
    const effective =
      this.limitDivisor > 1
        ? { ...request, candidates: request.candidates.map((c) => this.divided(c)), quotas: request.quotas?.map((q) => this.dividedQuota(q)) }
        : request;
    const leaseId = `${this.leasePrefix}${(++this.leaseSeq).toString(36)}`;
    const slots = this.slots.get(request.pool);
    const model = request.model;
    return admitWithQuotas(
      (accountId) => this.stateIn(pool, accountId),
      (subject) => this.quotaState(subject),
      effective,
      leaseId,
      (candidate, state) => {
        const slot = learnedSlot(candidate.id, candidate.scope, model);
        // A slot nothing was ever learned for admits like an empty one; it is only stored once an observation writes it.
        return slot.own ? state : (slots?.get(slot.owner)?.get(slot.model) ?? newLearnedState());
      },
    );
  }

  inspectQuota(subject: QuotaSubject, nowMs: number, dayBounds?: DayBounds): Promise<QuotaUsage> {
    const state = this.quotas[subject.scope].get(subject.id) ?? newQuotaState();
    const day = pickDay(dayBounds ?? utcDayBounds(nowMs), nowMs);
    state.minute.prune(nowMs - WINDOW_MS);
    state.tokenMinute.prune(nowMs - WINDOW_MS);
    return Promise.resolve({
      minute: state.minute.size,
      day: state.dayStartMs === day[0] ? state.dayCount : 0,
      dayStartMs: day[0],
      dayEndMs: day[1],
      tokenMinute: state.tokenMinute.sum,
      tokenDay: state.tokenDayStartMs === day[0] ? state.tokenDayCount : 0,
    });
  }

  private quotaState(subject: QuotaSubject): QuotaState {
    const byId = this.quotas[subject.scope];
    let state = byId.get(subject.id);
    if (state === undefined) {
      if (byId.size >= this.maxAccounts) byId.clear();
      state = newQuotaState();
      byId.set(subject.id, state);
    }
    return state;
  }

  private dividedQuota(subject: QuotaSubject): QuotaSubject {
    return {
      scope: subject.scope,
      id: subject.id,
      rpmLimit: divideLimit(subject.rpmLimit, this.limitDivisor),
      rpdLimit: divideLimit(subject.rpdLimit, this.limitDivisor),
      tpmLimit: divideLimit(subject.tpmLimit ?? null, this.limitDivisor),
      tpdLimit: divideLimit(subject.tpdLimit ?? null, this.limitDivisor),
    };
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
    if (deltaTokens === 0 || !Number.isFinite(deltaTokens)) return COMMITTED;
    const state = this.pools.get(pool)?.get(accountId);
    if (state !== undefined) reconcileAccountTokens(state, leaseId, deltaTokens, nowMs);
    if (quotas.length === 0) return COMMITTED;
    const day = pickDay(dayBounds ?? utcDayBounds(admittedAtMs), admittedAtMs);
    for (const ref of quotas) {
      const quota = this.quotas[ref.scope].get(ref.id);
      if (quota !== undefined) reconcileQuotaTokens(quota, leaseId, day, deltaTokens, nowMs);
    }
    return COMMITTED;
  }

  release(pool: string, accountId: string, leaseId: string): void {
    const state = this.pools.get(pool)?.get(accountId);
    if (state !== undefined) releaseLease(state, leaseId);
  }

  observe(
    pool: string,
    accountId: string,
    observation: Observation,
    nowMs: number,
    releaseLeaseId?: string | null,
    target?: LearnedTarget,
  ): Promise<void> {
    const state = this.stateIn(this.poolStates(pool), accountId);
    if (releaseLeaseId) releaseLease(state, releaseLeaseId);
    const from = state.health;
    const slot = learnedSlot(accountId, target?.scope, target?.model);
    applyObservation(state, observation, nowMs, slot.own ? state : this.slotFor(pool, slot, observationWritesSlot(observation), nowMs));
    if (state.health !== from) this.onHealthChange?.({ pool, accountId, from, to: state.health });
    return COMMITTED;
  }

  renew(pool: string, accountId: string, leaseId: string, leaseMs: number, nowMs: number): void {
    const state = this.pools.get(pool)?.get(accountId);
    if (state !== undefined) renewLease(state, leaseId, nowMs + leaseMs, nowMs);
  }

  inspect(pool: string, accountIds: readonly string[], nowMs: number, scopes?: ReadonlyMap<string, string>): Promise<AccountStateView[]> {
    const states = this.pools.get(pool);
    const slots = this.slots.get(pool);
    return Promise.resolve(
      accountIds.map((id) => {
        const slot = learnedSlot(id, scopes?.get(id), null);
        const learned = slot.own ? undefined : (slots?.get(slot.owner)?.get(slot.model) ?? newLearnedState());
        return viewOf(id, states?.get(id) ?? newAccountState(), nowMs, learned);
      }),
    );
  }

  /**
   * Shared slots (scope, per model) are not reset: a scope's are its siblings' too, and Redis cannot list an account's
   * per-model keys without a scan; both expire with their provider windows (learned-state.ts).
   */
  resetAccount(pool: string, accountId: string): Promise<void> {
    const state = this.pools.get(pool)?.get(accountId);
    if (state !== undefined) resetHealth(state);
    return Promise.resolve();
  }

  /**
   * The slot an observation applies to: the stored one, moved to the end of its owner's eviction order (OBSERVE_LUA
   * lengthens an existing key's TTL on every observation); else, when the observation `writes` into it, a new stored
   * one; else a scratch slot nothing keeps (applyObservation writes nothing into it).
   */
  private slotFor(pool: string, slot: Exclude<LearnedSlot, { own: true }>, writes: boolean, nowMs: number): LearnedState {
    let owners = this.slots.get(pool);
    let models = owners?.get(slot.owner);
    const stored = models?.get(slot.model);
    if (models !== undefined && stored !== undefined) {
      models.delete(slot.model);
      models.set(slot.model, stored);
      return stored;
    }
    if (!writes) return newLearnedState();
    if (owners === undefined) {
      owners = new Map();
      this.slots.set(pool, owners);
    }
    if (models === undefined) {
      if (this.slotOwners >= this.maxAccounts) this.evictSlotOwner();
      models = new Map();
      owners.set(slot.owner, models);
      this.slotOwners++;
    }
    if (models.size >= MAX_MODELS_PER_OWNER) makeRoomForModel(models, nowMs);
    const state = newLearnedState();
    models.set(slot.model, state);
    return state;
  }

  private evictSlotOwner(): void {
    for (const owners of this.slots.values()) {
      const first = owners.keys().next();
      if (!first.done) {
        owners.delete(first.value);
        this.slotOwners--;
        return;
      }
    }
  }

  close(): Promise<void> {
    this.pools.clear();
    this.slots.clear();
    this.slotOwners = 0;
    this.quotas.key.clear();
    this.quotas.tenant.clear();
    this.tracked = 0;
    return Promise.resolve();
  }

  private divided(candidate: AdmitCandidate): AdmitCandidate {
    return {
      id: candidate.id,
      rpmLimit: divideLimit(candidate.rpmLimit, this.limitDivisor),
      tpmLimit: divideLimit(candidate.tpmLimit, this.limitDivisor),
      maxConcurrency: divideLimit(candidate.maxConcurrency, this.limitDivisor),
      scope: candidate.scope ?? null,
    };
  }

  private poolStates(pool: string): Map<string, AccountState> {
    let states = this.pools.get(pool);
    if (states === undefined) {
      states = new Map();
      this.pools.set(pool, states);
    }
    return states;
  }

  private stateIn(states: Map<string, AccountState>, accountId: string): AccountState {
    let state = states.get(accountId);
    if (state === undefined) {
      if (this.tracked >= this.maxAccounts) this.evictOne();
      state = newAccountState();
      states.set(accountId, state);
      this.tracked++;
    }
    return state;
  }

  /** Forgets the first-tracked account without in-flight leases (or, failing that, the first one at all). */
  private evictOne(): void {
    let fallback: [Map<string, AccountState>, string] | null = null;
    for (const states of this.pools.values()) {
      for (const [accountId, state] of states) {
        if (state.leases.size === 0) {
          states.delete(accountId);
          this.tracked--;
          return;
        }
        fallback ??= [states, accountId];
      }
    }
    if (fallback !== null) {
      fallback[0].delete(fallback[1]);
      this.tracked--;
    }
  }
}

/**
 * Frees a model slot in a full owner (MAX_MODELS_PER_OWNER): every slot whose relevance ended goes (what a Redis
 * per-model key's TTL does), and only if none had, the least recently written (the map's first), so that junk models
 * cannot push out a live cooldown while they hold nothing. One pass over at most MAX_MODELS_PER_OWNER slots, on the
 * insertion of a new model only. The fallback is a per-model key's TTL floor; evaluated at nowMs it keeps a remaining
 * count reported without a reset instant (Redis keeps that a minute past its last observation: memory, until pushed
 * out).
 */
function makeRoomForModel(models: Map<string, LearnedState>, nowMs: number): void {
  const before = models.size;
  for (const [model, state] of models) {
    if (slotRelevantUntilMs(state, nowMs, MODEL_SLOT_MIN_TTL_MS) <= nowMs) models.delete(model);
  }
  if (models.size === before) models.delete(models.keys().next().value as string);
}
