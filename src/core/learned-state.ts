// Where the provider-learned part of an account's state lives: per account, per quota scope, per (scope, model).
// Pure: no I/O, no clock. capacity.ts decides with a LearnedState; the stores decide where to keep it with the
// functions here (memory: maps keyed by owner and model; Redis: the key suffixes of learnedKeySuffix).
//
// What is where:
// - per account, always: keypool's own rpm window, in-flight leases (concurrency), health, circuit, invalid hold
//   (AccountState in capacity.ts);
// - per slot (this file): the provider's 429 cooldown and its reported limits (remaining requests/tokens, their
//   resets). The slot is (owner, model): the owner is the account's quota scope when it has one (keys of one OpenAI
//   project / Anthropic workspace share one provider limit, so one 429 cools every sibling), else the account itself;
//   the model is the request's model when the provider limits per model (learnsPerModel), else none.
// - an account without a scope, on a request whose model is unknown or not limited per model, uses its own
//   AccountState as its LearnedState: exactly the state keypool kept before scopes and models existed.
import type { MutableLearnedLimits } from './capacity.js';
import type { RateLimitDialect } from './types.js';
import { EMPTY_LIMITS } from './providers/limits.js';
import { WINDOW_MS } from './request-log.js';

/** The provider-learned part of an account's state: a 429 cooldown and the limits the provider reported. */
export interface LearnedState {
  /** Epoch ms until which the provider asked us to back off (429); 0 = none. */
  cooldownUntilMs: number;
  readonly learned: MutableLearnedLimits;
}

export function newLearnedState(): LearnedState {
  return { cooldownUntilMs: 0, learned: { ...EMPTY_LIMITS } };
}

/**
 * Per-model slots the memory store keeps for one owner (account or scope) at most. A provider's model list is a few
 * dozen names; a client sending random model names must not grow memory unbounded. A new model past it first makes
 * the owner's slots whose relevance ended go (slotRelevantUntilMs), and only if none has, the least recently written:
 * a live cooldown is not pushed out by models that hold nothing any more (nor by models nothing was learned for,
 * which get no slot at all: account-observation.ts observationWritesSlot).
 */
export const MAX_MODELS_PER_OWNER = 64;

/**
 * How long a per-model slot stays after an observation at least, whatever it holds: the floor of its Redis key's TTL
 * (OBSERVE_LUA's slotTtlMs) and, as that TTL does, the `fallbackMs` of slotRelevantUntilMs for a per-model slot.
 */
export const MODEL_SLOT_MIN_TTL_MS = WINDOW_MS;

/**
 * Does the provider report its rate limits per model? OpenAI's (and OpenAI-compatible Groq's) x-ratelimit-* headers
 * describe the model just called; Anthropic limits per model class; Azure per deployment, which is the model here.
 * Gemini's quota errors carry no per-request limit headers, and `none` reports nothing: one slot per owner.
 */
export function learnsPerModel(dialect: RateLimitDialect): boolean {
  return dialect === 'openai' || dialect === 'anthropic' || dialect === 'azure';
}

/** The model whose slot a request's learned state uses: its model when the provider limits per model, else null. */
export function stateModel(dialect: RateLimitDialect, requestModel: string | null | undefined): string | null {
  return requestModel != null && requestModel !== '' && learnsPerModel(dialect) ? requestModel : null;
}

/**
 * Where one account's learned state lives for one request: `own` = the account's own AccountState (no scope, no
 * model); otherwise a shared slot of `owner` (`s:<scope>` or `a:<accountId>`) and `model` ('' = every model).
 */
export type LearnedSlot = { readonly own: true } | { readonly own: false; readonly owner: string; readonly model: string };

const OWN: LearnedSlot = Object.freeze({ own: true });

/** The slot of `accountId` in `scope` (null = its own scope) for `model` (null = unknown or not per model). */
export function learnedSlot(accountId: string, scope: string | null | undefined, model: string | null | undefined): LearnedSlot {
  const hasScope = scope != null && scope !== '';
  const hasModel = model != null && model !== '';
  if (!hasScope && !hasModel) return OWN;
  return { own: false, owner: hasScope ? `s:${scope}` : `a:${accountId}`, model: hasModel ? model : '' };
}

/**
 * The Redis key suffix (after `{kp:<pool>}:`) of a shared slot, null for `own` (the account's `<id>:s` hash):
 * `~s:<scope>` or `~a:<accountId>`, then `:m:<model>` for a model. Names are percent-encoded, so they hold no `:`,
 * `{` or `}`: a suffix never ends in `:s`/`:w`/`:l` like an account's keys, and never moves the pool's hash tag.
 */
export function learnedKeySuffix(slot: LearnedSlot): string | null {
  if (slot.own) return null;
  const kind = slot.owner.slice(0, 1);
  const base = `~${kind}:${encodeURIComponent(slot.owner.slice(2))}`;
  return slot.model === '' ? base : `${base}:m:${encodeURIComponent(slot.model)}`;
}

/**
 * Instant past which a slot holds nothing that matters (cooldown over, every reported window reset); the Redis TTL of
 * a per-model key and the memory store's pruning use it. A remaining count without a reset instant stays meaningful
 * indefinitely (the provider did not say): `fallbackMs` after nowMs then.
 */
export function slotRelevantUntilMs(state: LearnedState, nowMs: number, fallbackMs: number): number {
  const l = state.learned;
  let until = Math.max(state.cooldownUntilMs, l.requestsResetAtMs ?? 0, l.tokensResetAtMs ?? 0);
  if ((l.requestsRemaining !== null && l.requestsResetAtMs === null) || (l.tokensRemaining !== null && l.tokensResetAtMs === null)) {
    until = Math.max(until, nowMs + fallbackMs);
  }
  return until;
}

/** accountId -> quota scope of the accounts that have one (RateStateStore.inspect's `scopes`). */
export function scopesOf(accounts: Iterable<{ readonly id: string; readonly scope?: string | null }>): Map<string, string> {
  const scopes = new Map<string, string>();
  for (const account of accounts) if (account.scope != null && account.scope !== '') scopes.set(account.id, account.scope);
  return scopes;
}

/** The other accounts of the pool in `accountId`'s quota scope (none when it is its own scope). */
export function scopeSiblings<A extends { readonly id: string; readonly scope?: string | null }>(accounts: readonly A[], accountId: string, scope: string | null): A[] {
  return scope === null ? [] : accounts.filter((account) => account.scope === scope && account.id !== accountId);
}
