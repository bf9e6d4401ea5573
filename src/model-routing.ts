// Which accounts of a pool may serve a request's model: the accounts' compiled `models` (snapshot) minus the models a
// provider told this replica an account cannot serve (404 model_not_found: learned, per replica, for a while).
// Only pools that need the model (ProviderPool.needsModel) pay for any of it; every other pool passes through as is.
import { deny } from './core/errors.js';
import { MAX_MODEL_CHARS, modelFromBody, modelFromPath } from './core/models.js';
import type { Deny, HeaderBag, ProviderPool, RequestView } from './core/types.js';

export type ModelChoice =
  /** The pool to pick from (the accounts that serve the model) and the model; null when the pool does not need it. */
  | { readonly kind: 'pool'; readonly pool: ProviderPool; readonly model: string | null }
  | { readonly kind: 'deny'; readonly deny: Deny };

/**
 * How long an account stays without a model a provider said it cannot serve (`model_not_found`, a 404 about the
 * model). Per replica and in memory: a restart or another replica may try it once more, which costs one 404.
 */
export const MODEL_REMOVAL_MS = 10 * 60_000;
/** Most (account, model) removals remembered; the oldest go first. */
const MAX_REMOVALS = 10_000;
/** Most distinct models per pool whose filtered account list is kept (per snapshot); cleared when full. */
const MAX_MODELS_PER_POOL = 256;

export class ModelRouting {
  /** Per compiled pool (a new snapshot brings new pools): model -> the pool of the accounts that serve it. */
  private readonly servedBy = new WeakMap<ProviderPool, Map<string, ProviderPool>>();
  /** `${accountId}\n${model}` -> until when the account does not serve the model. Insertion order = age. */
  private readonly removals = new Map<string, number>();

  /** True when deciding this request needs its body: the pool needs the model and the path does not name it. */
  needsBody(pool: ProviderPool | undefined, headers: HeaderBag): boolean {
    return pool !== undefined && pool.needsModel && modelFromPath(pathOf(headers)).kind === 'in_body';
  }

  /** The accounts to pick from for this request, or the refusal (400 invalid_request / model_not_available). */
  choose(pool: ProviderPool, view: RequestView, nowMs: number): ModelChoice {
    const lookup = modelFromPath(pathOf(view.headers));
    if (!pool.needsModel) {
      // Headers only: a model the path names (Azure, Gemini) is kept for the ticket and learned removals; no body.
      if (lookup.kind !== 'model') return { kind: 'pool', pool, model: null };
      const served = this.withoutRemovals(pool, lookup.model, nowMs);
      return served.accounts.length === 0 ? this.notServed(lookup.model) : { kind: 'pool', pool: served, model: lookup.model };
    }
    const found = lookup.kind === 'in_body' ? modelFromBody(view.body?.bytes, view.body?.truncated ?? false) : lookup;
    if (found.kind === 'invalid') {
      // The model is only wanted for per-model state (per_model_state, no account restricts models): any account may
      // serve the request, so a body without a readable model (multipart upload, over the limit) is decided as a
      // request without a model, on the account's (or scope's) own state, never refused.
      if (!pool.accounts.some((account) => account.restrictsModels)) return { kind: 'pool', pool, model: null };
      return { kind: 'deny', deny: deny('invalid_request', { message: found.reason }) };
    }
    if (found.kind === 'none') return { kind: 'pool', pool, model: null };
    const model = found.model;
    const served = this.withoutRemovals(this.servedFrom(pool, model), model, nowMs);
    return served.accounts.length === 0 ? this.notServed(model) : { kind: 'pool', pool: served, model };
  }

  private notServed(model: string): ModelChoice {
    const shown = JSON.stringify(model.slice(0, MAX_MODEL_CHARS));
    return { kind: 'deny', deny: deny('model_not_available', { message: `No upstream credential for this provider serves the model ${shown}.` }) };
  }

  /** A provider said `accountId` cannot serve `model`: leave it out for that model for MODEL_REMOVAL_MS. */
  removeModel(accountId: string, model: string, nowMs: number): void {
    const key = `${accountId}\n${model}`;
    this.removals.delete(key);
    if (this.removals.size >= MAX_REMOVALS) {
      const oldest = this.removals.keys().next();
      if (!oldest.done) this.removals.delete(oldest.value);
    }
    this.removals.set(key, nowMs + MODEL_REMOVAL_MS);
  }

  /** Whether `accountId` is currently without `model` (admin, tests). */
  isRemoved(accountId: string, model: string, nowMs: number): boolean {
    const untilMs = this.removals.get(`${accountId}\n${model}`);
    return untilMs !== undefined && untilMs > nowMs;
  }

  private servedFrom(pool: ProviderPool, model: string): ProviderPool {
    let byModel = this.servedBy.get(pool);
    if (byModel === undefined) {
      byModel = new Map();
      this.servedBy.set(pool, byModel);
    }
    let served = byModel.get(model);
    if (served === undefined) {
      const accounts = pool.accounts.filter((account) => account.servesModel(model));
      served = accounts.length === pool.accounts.length ? pool : Object.freeze({ ...pool, accounts: Object.freeze(accounts) });
      if (byModel.size >= MAX_MODELS_PER_POOL) byModel.clear();
      byModel.set(model, served);
    }
    return served;
  }

  private withoutRemovals(pool: ProviderPool, model: string, nowMs: number): ProviderPool {
    if (this.removals.size === 0) return pool;
    const accounts = pool.accounts.filter((account) => !this.isRemoved(account.id, model, nowMs));
    return accounts.length === pool.accounts.length ? pool : { ...pool, accounts };
  }
}

function pathOf(headers: HeaderBag): string | undefined {
  const path = headers[':path'];
  return typeof path === 'string' ? path : path?.[0];
}
