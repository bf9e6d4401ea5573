// Upstream provider accounts (the pooled credentials): what an operator may ask for, validated. Used by the CLI,
// the admin API and the account DAO. The upstream secret is checked but never quoted in a message.
import { LIMITS, MODELS_MAX, isModelPattern, isQuotaScope } from '../rules.js';
import {
  checkInt,
  checkLimit,
  checkName,
  checkProviderSlug,
  checkText,
  fail,
  failure,
  Fields,
  isPlainObject,
  notAnObject,
  nullable,
  pass,
  quote,
  UNPRINTABLE,
  type Check,
  type Validated,
} from '../validated.js';

export type AccountTags = Readonly<Record<string, string | number | boolean | null>>;

/** Values of the optional fields of a new account when the operator gives none. */
export const ACCOUNT_DEFAULTS = { weight: 1, tier: 0, status: 'active' } as const;

/** A new account. Optional fields may be left out by code that builds one directly (tests, the demo seed). */
export interface NewAccount {
  /** Lower-case slug; whether the provider exists is the DAO's call. */
  readonly providerSlug: string;
  /** Unique among the provider's active accounts. */
  readonly name: string;
  /** The upstream secret, plaintext; encrypted before it is stored, never logged, echoed or returned. */
  readonly apiKey: string;
  readonly weight?: number;
  /** Priority tier (0 first). */
  readonly tier?: number;
  readonly rpmLimit?: number | null;
  readonly tpmLimit?: number | null;
  readonly maxConcurrency?: number | null;
  readonly tags?: AccountTags;
  /** Start disabled (default active). */
  readonly status?: 'active' | 'disabled';
  /** Models the account may serve: exact names or prefix globs (`gpt-4o*`); empty (default) = any (rules.ts MODEL_PATTERN). */
  readonly models?: readonly string[];
  /** Quota scope shared with sibling accounts (`openai-org-acme/project-x`); null (default) = its own scope. */
  readonly scope?: string | null;
}

export interface AccountPatch {
  readonly name?: string;
  readonly apiKey?: string;
  readonly weight?: number;
  readonly tier?: number;
  readonly rpmLimit?: number | null;
  readonly tpmLimit?: number | null;
  readonly maxConcurrency?: number | null;
  readonly tags?: AccountTags;
  readonly models?: readonly string[];
  readonly scope?: string | null;
}

const checkWeight = checkInt({ min: LIMITS.weightMin, max: LIMITS.weightMax });
const checkTier = checkInt({ min: LIMITS.tierMin, max: LIMITS.tierMax });

const NEW_ACCOUNT_FIELDS = [
  'providerSlug',
  'name',
  'apiKey',
  'weight',
  'tier',
  'rpmLimit',
  'tpmLimit',
  'maxConcurrency',
  'tags',
  'models',
  'scope',
];

/** A new upstream account. The provider slug's format is checked here; its existence by the repository. */
export function validateNewAccount(input: unknown): Validated<Required<Omit<NewAccount, 'status'>>> {
  const f = Fields.of(input, NEW_ACCOUNT_FIELDS);
  if (!f) return notAnObject();
  const providerSlug = f.required('providerSlug', checkProviderSlug);
  const name = f.required('name', checkName);
  const apiKey = f.required('apiKey', checkSecret);
  const weight = f.optional('weight', checkWeight) ?? ACCOUNT_DEFAULTS.weight;
  const tier = f.optional('tier', checkTier) ?? ACCOUNT_DEFAULTS.tier;
  const rpmLimit = f.optional('rpmLimit', nullable(checkLimit)) ?? null;
  const tpmLimit = f.optional('tpmLimit', nullable(checkLimit)) ?? null;
  const maxConcurrency = f.optional('maxConcurrency', nullable(checkLimit)) ?? null;
  const tags = f.optional('tags', checkTags) ?? {};
  const models = f.optional('models', checkModels) ?? [];
  const scope = f.optional('scope', nullable(checkScope)) ?? null;
  return f.result(() => ({
    providerSlug: providerSlug!,
    name: name!,
    apiKey: apiKey!,
    weight,
    tier,
    rpmLimit,
    tpmLimit,
    maxConcurrency,
    tags,
    models,
    scope,
  }));
}

/** A change to an upstream account (the provider cannot change; status has its own actions). */
export function validateAccountPatch(input: unknown): Validated<AccountPatch> {
  const f = Fields.of(input, NEW_ACCOUNT_FIELDS.filter((k) => k !== 'providerSlug'));
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof AccountPatch]: AccountPatch[K] } = {};
  if (f.has('name')) patch.name = f.required('name', checkName);
  if (f.has('apiKey')) patch.apiKey = f.required('apiKey', checkSecret);
  if (f.has('weight')) patch.weight = f.required('weight', checkWeight);
  if (f.has('tier')) patch.tier = f.required('tier', checkTier);
  if (f.has('rpmLimit')) patch.rpmLimit = f.required('rpmLimit', nullable(checkLimit));
  if (f.has('tpmLimit')) patch.tpmLimit = f.required('tpmLimit', nullable(checkLimit));
  if (f.has('maxConcurrency')) patch.maxConcurrency = f.required('maxConcurrency', nullable(checkLimit));
  if (f.has('tags')) patch.tags = f.required('tags', checkTags);
  if (f.has('models')) patch.models = f.required('models', checkModels);
  if (f.has('scope')) patch.scope = f.required('scope', nullable(checkScope));
  f.requireSome();
  return f.result(() => patch);
}

/** An upstream provider secret: non-empty, no whitespace or control characters, at most 4096 characters. */
export function validateUpstreamSecret(secret: unknown, field = 'apiKey'): Validated<string> {
  const check = checkSecret(secret);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field} ${check.message}`);
}

/** Why an account was disabled: optional free text, at most 500 printable characters. */
export function validateReason(value: unknown, field = 'reason'): Validated<string | null> {
  if (value === undefined || value === null) return { ok: true, value: null };
  const check = checkText(LIMITS.reasonMaxChars)(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}

/** Secret checks never quote the value. */
function checkSecret(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (value.length === 0) return fail('too_short', 'must not be empty');
  if (value.length > LIMITS.secretMaxChars) return fail('too_long', `must be at most ${LIMITS.secretMaxChars} characters (got ${value.length})`);
  if (/[\s\p{Cc}\p{Z}]/u.test(value)) return fail('invalid_format', 'must not contain whitespace or control characters');
  return pass(value);
}

function checkTags(value: unknown): Check<AccountTags> {
  if (!isPlainObject(value)) return fail('invalid_type', 'must be an object of key: value');
  const entries = Object.entries(value);
  if (entries.length > LIMITS.tagsMaxKeys) return fail('too_many', `at most ${LIMITS.tagsMaxKeys} tags (got ${entries.length})`);
  const out: Record<string, string | number | boolean | null> = {};
  for (const [key, tag] of entries) {
    if (key.length === 0 || key.length > LIMITS.tagKeyMaxChars || UNPRINTABLE.test(key)) {
      return fail('invalid_format', `tag name ${quote(key)} must be 1-${LIMITS.tagKeyMaxChars} printable characters`);
    }
    if (typeof tag === 'string') {
      if (tag.length > LIMITS.tagValueMaxChars || UNPRINTABLE.test(tag)) {
        return fail('invalid_format', `tag ${quote(key)} must be at most ${LIMITS.tagValueMaxChars} printable characters`);
      }
    } else if (!(tag === null || typeof tag === 'boolean' || (typeof tag === 'number' && Number.isFinite(tag)))) {
      return fail('invalid_type', `tag ${quote(key)} must be a string, number, boolean or null`);
    }
    out[key] = tag as string | number | boolean | null;
  }
  return pass(out);
}

/**
 * An account's models: a list (or, from the CLI, one comma-separated string) of MODEL_PATTERN entries, at most
 * MODELS_MAX; duplicates dropped, order kept. An empty list = any model.
 */
export function checkModels(value: unknown): Check<readonly string[]> {
  const items = typeof value === 'string' ? value.split(',').map((item) => item.trim()).filter((item) => item !== '') : value;
  if (!Array.isArray(items)) return fail('invalid_type', 'must be a list of model names or globs');
  if (items.length > MODELS_MAX) return fail('too_many', `at most ${MODELS_MAX} models (got ${items.length})`);
  const out: string[] = [];
  for (const item of items) {
    if (!isModelPattern(item)) {
      return fail('invalid_format', `model ${quote(item)} must be 1-128 characters of A-Z a-z 0-9 . _ : / @ + -, optionally ending in one *`);
    }
    if (!out.includes(item)) out.push(item);
  }
  return pass(out);
}

function checkScope(value: unknown): Check<string> {
  if (!isQuotaScope(value)) {
    return fail('invalid_format', `scope ${quote(value)} must be 1-128 characters of A-Z a-z 0-9 . _ : / @ -, starting with a letter or digit`);
  }
  return pass(value);
}
