// Token prices: one price per provider and model pattern, USD per million tokens. Validated here for the admin API and
// the DAO; the same rules are the SQL checks of migration 0010.
import { MAX_MODEL_CHARS } from '../../core/usage-cost.js';
import { checkProviderSlug, fail, Fields, notAnObject, nullable, pass, quote, type Check, type Validated } from '../validated.js';

/** Highest price accepted (USD per million tokens): far above any real one, low enough to catch a unit mistake. */
export const MAX_USD_PER_MTOK = 100_000;

/** Printable ASCII without spaces or quotes: a model name as providers report it, `prefix*` or `*`. */
export const PRICE_MODEL_PATTERN = new RegExp(`^[\\x21\\x23-\\x7e]{1,${MAX_MODEL_CHARS}}$`);

export interface NewPrice {
  readonly providerSlug: string;
  readonly model: string;
  readonly inputUsdPerMTok: number;
  readonly outputUsdPerMTok: number;
  readonly cachedInputUsdPerMTok: number | null;
  readonly cacheCreationUsdPerMTok: number | null;
}

export function checkModelPattern(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (!PRICE_MODEL_PATTERN.test(value)) return fail('invalid_format', `${quote(value)} must be a model name, a prefix ending in *, or * (printable, no spaces or quotes, at most ${MAX_MODEL_CHARS})`);
  if (value.indexOf('*') !== -1 && value.indexOf('*') !== value.length - 1) return fail('invalid_format', `${quote(value)}: * may only end a pattern`);
  return pass(value);
}

/** A price as decimal text (`2.5`, `0.075`): at most the 6 decimals the store keeps (NUMERIC(14, 6)). */
export const USD_DECIMAL_TEXT = /^\d{1,6}(?:\.\d{1,6})?$/;

/** A price: a number, or its decimal text (the CLI passes text). */
export function checkUsdPerMTok(input: unknown): Check<number> {
  const value = typeof input === 'string' && USD_DECIMAL_TEXT.test(input.trim()) ? Number(input) : input;
  if (typeof value !== 'number' || !Number.isFinite(value)) return fail('invalid_type', 'must be a number (USD per million tokens)');
  if (value < 0 || value > MAX_USD_PER_MTOK) return fail('out_of_range', `must be from 0 to ${MAX_USD_PER_MTOK} USD per million tokens (got ${value})`);
  return pass(Math.round(value * 1e6) / 1e6);
}

/**
 * Input fields (the admin API's snake_case, camelCased): provider, model, input, output, cachedInput?, cacheCreation?
 * (prices in USD per million tokens; cached/cache-creation null or absent = the input price).
 */
export function validatePrice(input: unknown): Validated<NewPrice> {
  const f = Fields.of(input, ['provider', 'model', 'input', 'output', 'cachedInput', 'cacheCreation']);
  if (!f) return notAnObject();
  const providerSlug = f.required('provider', checkProviderSlug);
  const model = f.required('model', checkModelPattern);
  const inputUsdPerMTok = f.required('input', checkUsdPerMTok);
  const outputUsdPerMTok = f.required('output', checkUsdPerMTok);
  const cachedInputUsdPerMTok = f.optional('cachedInput', nullable(checkUsdPerMTok)) ?? null;
  const cacheCreationUsdPerMTok = f.optional('cacheCreation', nullable(checkUsdPerMTok)) ?? null;
  return f.result(() => ({
    providerSlug: providerSlug!,
    model: model!,
    inputUsdPerMTok: inputUsdPerMTok!,
    outputUsdPerMTok: outputUsdPerMTok!,
    cachedInputUsdPerMTok,
    cacheCreationUsdPerMTok,
  }));
}
