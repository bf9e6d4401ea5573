// Table tests of where provider-learned state lives (src/core/learned-state.ts) and of the admission rules run over
// scope/model slots (src/core/capacity.ts with a SlotOf). No stores, no clock, no mocks.
import { describe, expect, it } from 'vitest';
import { applyObservation } from '../../src/core/account-observation.js';
import { type AccountState, admitFirst, newAccountState, type SlotOf } from '../../src/core/capacity.js';
import {
  learnedKeySuffix,
  learnedSlot,
  learnsPerModel,
  type LearnedSlot,
  type LearnedState,
  MAX_MODELS_PER_OWNER,
  newLearnedState,
  slotRelevantUntilMs,
  stateModel,
} from '../../src/core/learned-state.js';
import type { Observation, RateLimitDialect } from '../../src/core/types.js';
import type { AdmitCandidate, AdmitResult } from '../../src/ports.js';
import { cand, obs } from '../state/rate-state.contract.js';

const T = 1_000_000;

describe('learnsPerModel / stateModel', () => {
  it.each([
    ['openai', 'gpt-4o', 'gpt-4o'],
    ['anthropic', 'claude-sonnet-4', 'claude-sonnet-4'],
    ['azure', 'my-deployment', 'my-deployment'],
    ['gemini', 'gemini-2.0-flash', null],
    ['none', 'gpt-4o', null],
    ['openai', null, null],
    ['openai', undefined, null],
    ['openai', '', null],
  ] as const)('%s, model %s -> %s', (dialect, model, expected) => {
    expect(stateModel(dialect as RateLimitDialect, model)).toBe(expected);
    expect(learnsPerModel(dialect as RateLimitDialect)).toBe(dialect === 'openai' || dialect === 'anthropic' || dialect === 'azure');
  });
});

describe('learnedSlot and its Redis key suffix', () => {
  it.each<[string, string | null | undefined, string | null | undefined, LearnedSlot, string | null]>([
    ['no scope, no model: the account itself (as before)', null, null, { own: true }, null],
    ['empty scope and model count as none', '', '', { own: true }, null],
    ['undefined scope (a candidate without the field)', undefined, null, { own: true }, null],
    ['model only: per (account, model)', null, 'gpt-4o', { own: false, owner: 'a:acc-1', model: 'gpt-4o' }, '~a:acc-1:m:gpt-4o'],
    ['scope only: shared by the scope', 'org/proj', null, { own: false, owner: 's:org/proj', model: '' }, '~s:org%2Fproj'],
    ['scope and model', 'org/proj', 'gpt-4o', { own: false, owner: 's:org/proj', model: 'gpt-4o' }, '~s:org%2Fproj:m:gpt-4o'],
    ['names with : { } % are encoded (no tag move, no ambiguity)', 'a:m:b', 'x{y}%', { own: false, owner: 's:a:m:b', model: 'x{y}%' }, '~s:a%3Am%3Ab:m:x%7By%7D%25'],
  ])('%s', (_name, scope, model, slot, suffix) => {
    expect(learnedSlot('acc-1', scope, model)).toEqual(slot);
    expect(learnedKeySuffix(slot)).toBe(suffix);
  });

  it('a suffix never looks like an account key (<id>:s|w|l) and never contains a brace', () => {
    for (const [scope, model] of [['x', null], ['x:s', null], ['x', 'y:l'], [null, 'm:w']] as const) {
      const suffix = learnedKeySuffix(learnedSlot('acc', scope, model))!;
      expect(suffix).not.toMatch(/:[swl]$/);
      expect(suffix).not.toMatch(/[{}]/);
    }
  });
});

describe('slotRelevantUntilMs', () => {
  it.each<[string, Partial<LearnedState['learned']>, number, number]>([
    ['nothing learned: now (nothing to keep)', {}, 0, 0],
    ['cooldown', {}, T + 5_000, T + 5_000],
    ['latest reset wins', { requestsRemaining: 3, requestsResetAtMs: T + 100, tokensRemaining: 9, tokensResetAtMs: T + 900 }, T + 50, T + 900],
    ['remaining without a reset: the fallback', { requestsRemaining: 3 }, 0, T + 60_000],
  ])('%s', (_name, learned, cooldownUntilMs, expected) => {
    const s = newLearnedState();
    Object.assign(s.learned, learned);
    s.cooldownUntilMs = cooldownUntilMs;
    expect(slotRelevantUntilMs(s, T, 60_000)).toBe(expected);
  });

  it('bounds models per owner to a small number', () => {
    expect(MAX_MODELS_PER_OWNER).toBeGreaterThanOrEqual(16);
    expect(MAX_MODELS_PER_OWNER).toBeLessThanOrEqual(256);
  });
});

/** A minimal world: accounts' own states plus the shared slots, as a store would keep them. */
class World {
  readonly accounts = new Map<string, AccountState>();
  readonly slots = new Map<string, LearnedState>();

  stateOf = (id: string): AccountState => this.accounts.get(id) ?? this.accounts.set(id, newAccountState()).get(id)!;

  slotOf(model: string | null): SlotOf {
    return (candidate, state) => {
      const slot = learnedSlot(candidate.id, candidate.scope, model);
      if (slot.own) return state;
      const key = `${slot.owner}|${slot.model}`;
      return this.slots.get(key) ?? this.slots.set(key, newLearnedState()).get(key)!;
    };
  }

  admit(candidates: AdmitCandidate[], model: string | null, nowMs = T + 1, leastLoaded = false): AdmitResult {
    return admitFirst(this.stateOf, { pool: 'p', candidates, leastLoaded, nowMs, leaseMs: 1_000, model }, `l${nowMs}`, this.slotOf(model));
  }

  observe(candidate: AdmitCandidate, model: string | null, observation: Observation, nowMs = T): void {
    const state = this.stateOf(candidate.id);
    applyObservation(state, observation, nowMs, this.slotOf(model)(candidate, state));
  }
}

const exhausted = (resetAtMs: number): Observation => obs('success', { learned: { requestsLimit: 100, requestsRemaining: 0, requestsResetAtMs: resetAtMs } });

describe('per-model learned state', () => {
  it('one model exhausted leaves the account admitted for other models, and for unknown models', () => {
    const w = new World();
    const a = cand('a');
    w.observe(a, 'gpt-4o', exhausted(T + 30_000));
    expect(w.admit([a], 'gpt-4o')).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 30_000 });
    expect(w.admit([a], 'gpt-4o-mini').ok).toBe(true);
    expect(w.admit([a], null).ok).toBe(true);
  });

  it('a 429 for one model cools only that model; a 429 without a model cools only the account slot', () => {
    const w = new World();
    const a = cand('a');
    w.observe(a, 'gpt-4o', obs('rate_limited', { cooldownUntilMs: T + 7_000 }));
    expect(w.admit([a], 'gpt-4o')).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 7_000 });
    expect(w.admit([a], 'o1').ok).toBe(true);
    w.observe(a, null, obs('rate_limited', { cooldownUntilMs: T + 9_000 }));
    expect(w.admit([a], null)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 9_000 });
    expect(w.admit([a], 'o1').ok).toBe(true);
  });

  it('health, circuit and invalid hold stay per account for every model', () => {
    const w = new World();
    const a = cand('a');
    w.observe(a, 'gpt-4o', obs('invalid_credential'));
    expect(w.admit([a], 'o1')).toEqual({ ok: false, reason: 'unhealthy', retryAtMs: null });
  });

  it('keypool own rpm and concurrency stay per account across models', () => {
    const w = new World();
    const a = cand('a', { rpmLimit: 1 });
    expect(w.admit([a], 'gpt-4o', T + 1).ok).toBe(true);
    expect(w.admit([a], 'o1', T + 2)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 1 + 60_000 });
  });

  it('least-loaded compares the requested model remaining, not another model', () => {
    const w = new World();
    const a = cand('a');
    const b = cand('b');
    // a is nearly out of gpt-4o but idle on o1; b the opposite.
    w.observe(a, 'gpt-4o', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 5, requestsResetAtMs: T + 60_000 } }));
    w.observe(b, 'o1', obs('success', { learned: { requestsLimit: 100, requestsRemaining: 5, requestsResetAtMs: T + 60_000 } }));
    expect(w.admit([a, b], 'gpt-4o', T + 1, true)).toMatchObject({ ok: true, accountId: 'b' });
    expect(w.admit([a, b], 'o1', T + 2, true)).toMatchObject({ ok: true, accountId: 'a' });
  });
});

describe('quota scopes', () => {
  it('one 429 cools every sibling of the scope, not accounts of other scopes', () => {
    const w = new World();
    const [a, b, c] = [cand('a', { scope: 'proj-x' }), cand('b', { scope: 'proj-x' }), cand('c', { scope: 'proj-y' })];
    w.observe(a, null, obs('rate_limited', { cooldownUntilMs: T + 5_000 }));
    expect(w.admit([a, b], null)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 5_000 });
    expect(w.admit([a, b, c], null)).toMatchObject({ ok: true, accountId: 'c' });
  });

  it('with a model: the scope cools for that model only', () => {
    const w = new World();
    const [a, b] = [cand('a', { scope: 'proj-x' }), cand('b', { scope: 'proj-x' })];
    w.observe(b, 'gpt-4o', obs('rate_limited', { cooldownUntilMs: T + 5_000 }));
    expect(w.admit([a, b], 'gpt-4o')).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 5_000 });
    expect(w.admit([a, b], 'o1')).toMatchObject({ ok: true, accountId: 'a' });
  });

  it('learned remaining capacity is shared: each sibling admission spends the one budget', () => {
    const w = new World();
    const [a, b] = [cand('a', { scope: 's' }), cand('b', { scope: 's' })];
    w.observe(a, null, obs('success', { learned: { requestsLimit: 10, requestsRemaining: 2, requestsResetAtMs: T + 60_000 } }));
    expect(w.admit([a, b], null, T + 1)).toMatchObject({ ok: true, accountId: 'a' });
    expect(w.admit([b, a], null, T + 2)).toMatchObject({ ok: true, accountId: 'b' });
    expect(w.admit([a, b], null, T + 3)).toEqual({ ok: false, reason: 'exhausted', retryAtMs: T + 60_000 });
  });

  it('a scope of one behaves exactly like no scope', () => {
    const script = (scope: string | null): unknown[] => {
      const w = new World();
      const a = cand('a', { scope, rpmLimit: 3 });
      const out: unknown[] = [];
      w.observe(a, null, obs('success', { learned: { requestsLimit: 10, requestsRemaining: 2, requestsResetAtMs: T + 60_000 } }));
      out.push(w.admit([a], null, T + 1), w.admit([a], null, T + 2), w.admit([a], null, T + 3));
      w.observe(a, null, obs('rate_limited', { cooldownUntilMs: T + 70_000 }), T + 4);
      out.push(w.admit([a], null, T + 61_000), w.admit([a], null, T + 70_001));
      w.observe(a, null, obs('server_error'), T + 70_002);
      out.push(w.admit([a], null, T + 70_003));
      return out;
    };
    expect(script('solo')).toEqual(script(null));
  });
});
