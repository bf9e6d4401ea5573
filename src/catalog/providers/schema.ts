// Providers (the pools' upstream API families): the slug an operator names a pool by and the settings an operator
// may change on a provider (its default selection strategy, its per-model state switch), validated.
import { STRATEGIES, type Strategy } from '../../core/types.js';
import { checkBoolean, checkProviderSlug, fail, failure, Fields, notAnObject, pass, quote, type Check, type Validated } from '../validated.js';

/** A provider slug (`openai`, `azure-openai`); returned lower-case. Existence is the DAO's call. */
export function validateProviderSlug(value: unknown, field = 'providerSlug'): Validated<string> {
  const check = checkProviderSlug(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}

/** What an operator may change on a provider. Auth style and rate-limit dialect are the provider's nature, not settings. */
export interface ProviderPatch {
  /** The pool's default selection strategy (a Kong route's `strategy` still overrides it per route). */
  readonly strategy?: Strategy;
  /**
   * Per-model provider state for every request of the pool, not only where an account has a `models` list: the body
   * is read for the model (buffered up to the gateway's limit). Dialects without per-model limits ignore it.
   */
  readonly perModelState?: boolean;
}

export function validateProviderPatch(input: unknown): Validated<ProviderPatch> {
  const f = Fields.of(input, ['strategy', 'perModelState']);
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof ProviderPatch]: ProviderPatch[K] } = {};
  if (f.has('strategy')) patch.strategy = f.required('strategy', checkStrategy);
  if (f.has('perModelState')) patch.perModelState = f.required('perModelState', checkBoolean);
  f.requireSome();
  return f.result(() => patch);
}

export function checkStrategy(value: unknown): Check<Strategy> {
  if (typeof value === 'string' && (STRATEGIES as readonly string[]).includes(value)) return pass(value as Strategy);
  return fail('invalid_choice', `${quote(value)} is not one of ${STRATEGIES.join(', ')}`);
}
