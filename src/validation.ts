// The one module that checks every operator input, shared by the `keypool` CLI and the admin HTTP API.
//
// Every validator is a pure function: (input, nowMs?) -> { ok: true, value } with a typed, normalised value, or
// { ok: false, errors } listing every problem found as { field, code, message }. Bad input is a value, never an
// exception; `unwrap` turns a failure into a `ValidationFailure` for callers that prefer to throw, and both front
// ends render that one type (CLI: message on stderr, exit 2; admin API: 422 `{"error":{"code","message","field"}}`).
//
// Input objects use camelCase field names (`allowedIps`); `camelCaseKeys` converts a snake_case JSON body and
// `ValidationFailure.toHttp({ fieldCase: 'snake' })` names the fields back the way the client sent them.
// Numbers and booleans are accepted as JSON values or as their canonical strings (the CLI passes strings).
// Messages may quote a rejected value (truncated and escaped) except upstream secrets, which are never echoed.
import { parseCidr } from './core/cidr.js';
import { parseHumanDurationMs } from './core/duration.js';
import { MAX_PATTERN_LENGTH, validatePattern } from './core/priority.js';
import { MATCH_TYPES, type MatchType } from './core/types.js';

// ---------------------------------------------------------------------------------------------
// Result and error types
// ---------------------------------------------------------------------------------------------

export type ValidationCode =
  | 'required'
  | 'invalid_type'
  | 'invalid_format'
  | 'too_short'
  | 'too_long'
  | 'too_many'
  | 'out_of_range'
  | 'invalid_cidr'
  | 'invalid_duration'
  | 'invalid_date'
  | 'in_past'
  | 'invalid_uuid'
  | 'invalid_pattern'
  | 'invalid_choice'
  | 'unknown_setting'
  | 'unknown_field'
  | 'conflicting_fields'
  | 'empty_patch';

export interface FieldError {
  /** camelCase input field name (`allowedIps`), or `body` for the input as a whole. */
  readonly field: string;
  readonly code: ValidationCode;
  /** One sentence for a human; never contains a secret. */
  readonly message: string;
}

export type Validated<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly errors: readonly FieldError[] };

/** The admin API's error body shape; `details` lists every problem when there was more than one. */
export interface HttpErrorBody {
  readonly error: {
    readonly code: ValidationCode;
    readonly message: string;
    readonly field: string;
    readonly details: readonly FieldError[];
  };
}

/** Bad operator input, as an exception for callers that throw. CLI: exit 2. Admin API: 422. */
export class ValidationFailure extends Error {
  readonly errors: readonly FieldError[];

  constructor(errors: readonly FieldError[]) {
    super(errors.length === 0 ? 'invalid input' : errors.map((e) => e.message).join('; '));
    this.name = 'ValidationFailure';
    this.errors = errors.length === 0 ? [{ field: 'body', code: 'invalid_type', message: 'invalid input' }] : errors;
  }

  /** HTTP status and body for the admin API; `fieldCase: 'snake'` renames fields to the JSON body's style. */
  toHttp(options: { fieldCase?: 'camel' | 'snake' } = {}): { status: 422; body: HttpErrorBody } {
    const rename = options.fieldCase === 'snake' ? snakeCase : (field: string) => field;
    const details = this.errors.map((e) => ({ ...e, field: rename(e.field) }));
    const first = details[0]!;
    return { status: 422, body: { error: { code: first.code, message: first.message, field: first.field, details } } };
  }
}

/** The value of a successful result, or throws `ValidationFailure`. */
export function unwrap<T>(result: Validated<T>): T {
  if (result.ok) return result.value;
  throw new ValidationFailure(result.errors);
}

/** One line per problem, for a terminal (every message already names its field). */
export function formatErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => e.message).join('\n');
}

/** `allowed_ips` -> `allowedIps` for the top-level keys of a JSON body (values untouched). */
export function camelCaseKeys(body: unknown): unknown {
  if (!isPlainObject(body)) return body;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) out[key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = value;
  return out;
}

/** `allowedIps` -> `allowed_ips`. */
export function snakeCase(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

// ---------------------------------------------------------------------------------------------
// Limits (exported so help texts and the OpenAPI document quote the same numbers)
// ---------------------------------------------------------------------------------------------

export const LIMITS = {
  nameMaxChars: 100,
  descriptionMaxChars: 500,
  reasonMaxChars: 500,
  patternMaxChars: MAX_PATTERN_LENGTH,
  allowedIpsMax: 256,
  /** Longest `expiresIn`: ten years. */
  expiresInMaxMs: 3650 * 86_400_000,
  rotateAfterDaysMin: 1,
  rotateAfterDaysMax: 3650,
  graceMaxMs: 30 * 86_400_000,
  weightMax: 1000,
  tierMax: 100,
  /** rpm/tpm/concurrency columns are INTEGER. */
  limitMax: 2_147_483_647,
  tagsMaxKeys: 50,
  tagKeyMaxChars: 64,
  tagValueMaxChars: 256,
  secretMaxChars: 4096,
  priorityMax: 9,
  cacheTtlSecMax: 86_400,
} as const;

/** Grace window of a rotation when the caller names none: the old key keeps working this long. */
export const DEFAULT_ROTATE_GRACE_MS = 24 * 3_600_000;

// ---------------------------------------------------------------------------------------------
// Normalised values
// ---------------------------------------------------------------------------------------------

export interface NewKey {
  readonly name: string;
  readonly tenantId: string | null;
  /** Normalised, de-duplicated CIDRs; empty = any address. */
  readonly allowedIps: readonly string[];
  readonly expiresAt: Date | null;
  readonly rotateAfterDays: number | null;
}

/** Only the fields present change; null clears a nullable field. */
export interface KeyPatch {
  readonly name?: string;
  readonly tenantId?: string | null;
  readonly allowedIps?: readonly string[];
  readonly expiresAt?: Date | null;
  readonly rotateAfterDays?: number | null;
}

export interface Rotate {
  readonly graceMs: number;
}

export type AccountTags = Readonly<Record<string, string | number | boolean | null>>;

export interface NewAccount {
  /** Lower-case slug; whether the provider exists is the repository's call. */
  readonly providerSlug: string;
  readonly name: string;
  /** The upstream secret, validated; never log or echo it. */
  readonly apiKey: string;
  readonly weight: number;
  readonly tier: number;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  readonly maxConcurrency: number | null;
  readonly tags: AccountTags;
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
}

export type TenantType = 'internal' | 'external';
export const TENANT_TYPES: readonly TenantType[] = ['internal', 'external'];

export interface NewMapping {
  readonly pattern: string;
  readonly matchType: MatchType;
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  readonly tenantType: TenantType | null;
  readonly description: string | null;
  readonly enabled: boolean;
}

export interface MappingPatch {
  readonly pattern?: string;
  readonly matchType?: MatchType;
  readonly priority?: number;
  readonly tenantId?: string | null;
  readonly tenantName?: string | null;
  readonly tenantType?: TenantType | null;
  readonly description?: string | null;
  readonly enabled?: boolean;
}

export const SETTING_NAMES = ['priority.enabled', 'priority.default_priority', 'priority.cache_ttl_sec'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

export type Setting =
  | { readonly name: 'priority.enabled'; readonly value: boolean }
  | { readonly name: 'priority.default_priority'; readonly value: number }
  | { readonly name: 'priority.cache_ttl_sec'; readonly value: number };

// ---------------------------------------------------------------------------------------------
// Validators
// ---------------------------------------------------------------------------------------------

const NEW_KEY_FIELDS = ['name', 'tenantId', 'allowedIps', 'expiresIn', 'expiresAt', 'rotateAfterDays'];

/** A new system (client) key. `nowMs` anchors `expiresIn` and the "in the future" check of `expiresAt`. */
export function validateNewKey(input: unknown, nowMs: number): Validated<NewKey> {
  const f = Fields.of(input, NEW_KEY_FIELDS);
  if (!f) return notAnObject();
  const name = f.required('name', checkName);
  const tenantId = f.optional('tenantId', nullable(checkTenantId)) ?? null;
  const allowedIps = f.optional('allowedIps', checkAllowedIps) ?? [];
  const expiresAt = readExpiry(f, nowMs, false) ?? null;
  const rotateAfterDays = f.optional('rotateAfterDays', nullable(checkRotateAfterDays)) ?? null;
  return f.result(() => ({ name: name!, tenantId, allowedIps, expiresAt, rotateAfterDays }));
}

/** A change to a system key. At least one field; `expiresAt: null` removes the expiry. */
export function validateKeyPatch(input: unknown, nowMs: number): Validated<KeyPatch> {
  const f = Fields.of(input, NEW_KEY_FIELDS);
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof KeyPatch]: KeyPatch[K] } = {};
  if (f.has('name')) patch.name = f.required('name', checkName);
  if (f.has('tenantId')) patch.tenantId = f.required('tenantId', nullable(checkTenantId));
  if (f.has('allowedIps')) patch.allowedIps = f.required('allowedIps', checkAllowedIps);
  const expiresAt = readExpiry(f, nowMs, true);
  if (expiresAt !== undefined) patch.expiresAt = expiresAt;
  if (f.has('rotateAfterDays')) patch.rotateAfterDays = f.required('rotateAfterDays', nullable(checkRotateAfterDays));
  f.requireSome();
  return f.result(() => patch);
}

/**
 * A key rotation. The grace window comes as `grace` (human duration `24h`, `0s`), `graceSeconds` or `graceMs`
 * (non-negative integers); at most one of them; none = DEFAULT_ROTATE_GRACE_MS. Range 0..30 days.
 */
export function validateRotate(input: unknown): Validated<Rotate> {
  const f = Fields.of(input ?? {}, ['grace', 'graceSeconds', 'graceMs']);
  if (!f) return notAnObject();
  const given = (['grace', 'graceSeconds', 'graceMs'] as const).filter((k) => f.has(k));
  if (given.length > 1) {
    f.add(given[1]!, 'conflicting_fields', `${given[1]!}: give only one of ${given.join(', ')}`);
    return f.result(() => ({ graceMs: 0 }));
  }
  let graceMs: number | undefined = DEFAULT_ROTATE_GRACE_MS;
  if (f.has('grace')) graceMs = f.required('grace', checkDurationMs({ min: 0, max: LIMITS.graceMaxMs }));
  if (f.has('graceSeconds')) {
    const seconds = f.required('graceSeconds', checkInt({ min: 0, max: LIMITS.graceMaxMs / 1000 }));
    graceMs = seconds === undefined ? undefined : seconds * 1000;
  }
  if (f.has('graceMs')) graceMs = f.required('graceMs', checkInt({ min: 0, max: LIMITS.graceMaxMs }));
  return f.result(() => ({ graceMs: graceMs! }));
}

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
];

/** A new upstream account. The provider slug's format is checked here; its existence by the repository. */
export function validateNewAccount(input: unknown): Validated<NewAccount> {
  const f = Fields.of(input, NEW_ACCOUNT_FIELDS);
  if (!f) return notAnObject();
  const providerSlug = f.required('providerSlug', checkProviderSlug);
  const name = f.required('name', checkName);
  const apiKey = f.required('apiKey', checkSecret);
  const weight = f.optional('weight', checkInt({ min: 1, max: LIMITS.weightMax })) ?? 1;
  const tier = f.optional('tier', checkInt({ min: 0, max: LIMITS.tierMax })) ?? 0;
  const rpmLimit = f.optional('rpmLimit', nullable(checkLimit)) ?? null;
  const tpmLimit = f.optional('tpmLimit', nullable(checkLimit)) ?? null;
  const maxConcurrency = f.optional('maxConcurrency', nullable(checkLimit)) ?? null;
  const tags = f.optional('tags', checkTags) ?? {};
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
  }));
}

/** A change to an upstream account (the provider cannot change; status has its own actions). */
export function validateAccountPatch(input: unknown): Validated<AccountPatch> {
  const f = Fields.of(input, NEW_ACCOUNT_FIELDS.filter((k) => k !== 'providerSlug'));
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof AccountPatch]: AccountPatch[K] } = {};
  if (f.has('name')) patch.name = f.required('name', checkName);
  if (f.has('apiKey')) patch.apiKey = f.required('apiKey', checkSecret);
  if (f.has('weight')) patch.weight = f.required('weight', checkInt({ min: 1, max: LIMITS.weightMax }));
  if (f.has('tier')) patch.tier = f.required('tier', checkInt({ min: 0, max: LIMITS.tierMax }));
  if (f.has('rpmLimit')) patch.rpmLimit = f.required('rpmLimit', nullable(checkLimit));
  if (f.has('tpmLimit')) patch.tpmLimit = f.required('tpmLimit', nullable(checkLimit));
  if (f.has('maxConcurrency')) patch.maxConcurrency = f.required('maxConcurrency', nullable(checkLimit));
  if (f.has('tags')) patch.tags = f.required('tags', checkTags);
  f.requireSome();
  return f.result(() => patch);
}

const MAPPING_FIELDS = [
  'pattern',
  'matchType',
  'priority',
  'tenantId',
  'tenantName',
  'tenantType',
  'description',
  'enabled',
];

/** A new priority mapping; regex patterns go through the core's safety check. */
export function validateNewMapping(input: unknown): Validated<NewMapping> {
  const f = Fields.of(input, MAPPING_FIELDS);
  if (!f) return notAnObject();
  const matchType = f.required('matchType', checkMatchType);
  const pattern = f.required('pattern', checkPatternText);
  if (matchType !== undefined && pattern !== undefined) checkPatternFor(f, matchType, pattern);
  const priority = f.required('priority', checkPriority);
  const tenantId = f.optional('tenantId', nullable(checkTenantId)) ?? null;
  const tenantName = f.optional('tenantName', nullable(checkName)) ?? null;
  const tenantType = f.optional('tenantType', nullable(checkTenantType)) ?? null;
  const description = f.optional('description', nullable(checkText(LIMITS.descriptionMaxChars))) ?? null;
  const enabled = f.optional('enabled', checkBoolean) ?? true;
  return f.result(() => ({
    pattern: pattern!,
    matchType: matchType!,
    priority: priority!,
    tenantId,
    tenantName,
    tenantType,
    description,
    enabled,
  }));
}

/**
 * A change to a priority mapping. A new pattern or match type is checked against the other one, taken from
 * `current` when the patch does not carry it.
 */
export function validateMappingPatch(
  input: unknown,
  current?: { readonly pattern: string; readonly matchType: MatchType },
): Validated<MappingPatch> {
  const f = Fields.of(input, MAPPING_FIELDS);
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof MappingPatch]: MappingPatch[K] } = {};
  if (f.has('matchType')) patch.matchType = f.required('matchType', checkMatchType);
  if (f.has('pattern')) patch.pattern = f.required('pattern', checkPatternText);
  if (f.has('pattern') || f.has('matchType')) {
    const matchType = f.has('matchType') ? patch.matchType : current?.matchType;
    const pattern = f.has('pattern') ? patch.pattern : current?.pattern;
    if (matchType !== undefined && pattern !== undefined) checkPatternFor(f, matchType, pattern);
    else if (f.errors.length === 0) {
      const missing = f.has('pattern') ? 'matchType' : 'pattern';
      f.add(missing, 'required', `${missing} is required when changing ${missing === 'pattern' ? 'matchType' : 'pattern'}`);
    }
  }
  if (f.has('priority')) patch.priority = f.required('priority', checkPriority);
  if (f.has('tenantId')) patch.tenantId = f.required('tenantId', nullable(checkTenantId));
  if (f.has('tenantName')) patch.tenantName = f.required('tenantName', nullable(checkName));
  if (f.has('tenantType')) patch.tenantType = f.required('tenantType', nullable(checkTenantType));
  if (f.has('description')) patch.description = f.required('description', nullable(checkText(LIMITS.descriptionMaxChars)));
  if (f.has('enabled')) patch.enabled = f.required('enabled', checkBoolean);
  f.requireSome();
  return f.result(() => patch);
}

/** A runtime setting: `priority.enabled` (boolean), `priority.default_priority` (0-9), `priority.cache_ttl_sec` (0-86400). */
export function validateSetting(name: unknown, value: unknown): Validated<Setting> {
  if (typeof name !== 'string' || !(SETTING_NAMES as readonly string[]).includes(name)) {
    return failure('name', 'unknown_setting', `unknown setting ${quote(name)}; known: ${SETTING_NAMES.join(', ')}`);
  }
  const check: Check<boolean | number> =
    name === 'priority.enabled'
      ? checkBoolean(value)
      : name === 'priority.default_priority'
        ? checkPriority(value)
        : checkInt({ min: 0, max: LIMITS.cacheTtlSecMax })(value);
  if (!check.ok) return failure('value', check.code, `${name}: ${check.message}`);
  return { ok: true, value: { name, value: check.value } as Setting };
}

/** A setting name alone (for `config get NAME`). */
export function validateSettingName(name: unknown): Validated<SettingName> {
  if (typeof name === 'string' && (SETTING_NAMES as readonly string[]).includes(name)) {
    return { ok: true, value: name as SettingName };
  }
  return failure('name', 'unknown_setting', `unknown setting ${quote(name)}; known: ${SETTING_NAMES.join(', ')}`);
}

/** An upstream provider secret: non-empty, no whitespace or control characters, at most 4096 characters. */
export function validateUpstreamSecret(secret: unknown, field = 'apiKey'): Validated<string> {
  const check = checkSecret(secret);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field} ${check.message}`);
}

/** Shortest audit/usage retention an operator may ask for: pruning the last hour is a typo, not a policy. */
export const MIN_RETENTION_MS = 3_600_000;

/**
 * How old audit rows and usage buckets must be to be pruned (`90d`; an hour to ten years); returns the cut-off
 * instant, `nowMs` minus the duration.
 */
export function validateRetention(value: unknown, nowMs: number, field = 'before'): Validated<Date> {
  const check = checkDurationMs({ min: MIN_RETENTION_MS, max: LIMITS.expiresInMaxMs })(value);
  return check.ok ? { ok: true, value: new Date(nowMs - check.value) } : failure(field, check.code, `${field}: ${check.message}`);
}

/** A row id (UUID, any version); returned lower-case. */
export function validateId(value: unknown, field = 'id'): Validated<string> {
  const check = checkUuid(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}

/** A provider slug (`openai`, `azure-openai`); returned lower-case. Existence is the repository's call. */
export function validateProviderSlug(value: unknown, field = 'providerSlug'): Validated<string> {
  const check = checkProviderSlug(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}

/** Why an account was disabled: optional free text, at most 500 printable characters. */
export function validateReason(value: unknown, field = 'reason'): Validated<string | null> {
  if (value === undefined || value === null) return { ok: true, value: null };
  const check = checkText(LIMITS.reasonMaxChars)(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}

// ---------------------------------------------------------------------------------------------
// Field checks (leaves): value in, Check out
// ---------------------------------------------------------------------------------------------

type Check<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: ValidationCode; readonly message: string };

const pass = <T>(value: T): Check<T> => ({ ok: true, value });
const fail = (code: ValidationCode, message: string): Check<never> => ({ ok: false, code, message });

/** Control characters, line/paragraph separators and bidi overrides (which disguise text in terminals and logs). */
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const TENANT_ID = /^[A-Za-z0-9._-]{1,64}$/;
const PROVIDER_SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INTEGER_TEXT = /^-?\d{1,16}$/;

function checkText(maxChars: number, minChars = 1): (value: unknown) => Check<string> {
  return (value) => {
    if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
    const text = value.trim();
    const length = [...text].length;
    if (length < minChars) return fail('too_short', minChars === 1 ? 'must not be empty' : `must be at least ${minChars} characters`);
    if (length > maxChars) return fail('too_long', `must be at most ${maxChars} characters (got ${length})`);
    if (UNPRINTABLE.test(text)) return fail('invalid_format', 'must not contain control characters');
    return pass(text);
  };
}

const checkName = checkText(LIMITS.nameMaxChars);

function checkTenantId(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (!TENANT_ID.test(value)) return fail('invalid_format', `${quote(value)} must be 1-64 characters of A-Z a-z 0-9 . _ -`);
  return pass(value);
}

function checkProviderSlug(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  const slug = value.trim().toLowerCase();
  if (!PROVIDER_SLUG.test(slug)) return fail('invalid_format', `${quote(value)} is not a provider slug (lower-case letters, digits and -)`);
  return pass(slug);
}

function checkUuid(value: unknown): Check<string> {
  if (typeof value !== 'string' || !UUID.test(value)) return fail('invalid_uuid', `${quote(value)} is not a UUID`);
  return pass(value.toLowerCase());
}

function checkAllowedIps(value: unknown): Check<readonly string[]> {
  const items = typeof value === 'string' ? splitList(value) : value;
  if (!Array.isArray(items)) return fail('invalid_type', 'must be a list of CIDRs');
  if (items.length > LIMITS.allowedIpsMax) return fail('too_many', `at most ${LIMITS.allowedIpsMax} entries (got ${items.length})`);
  const seen = new Set<string>();
  const bad: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string') {
      bad.push(`${quote(item)}: must be a string`);
      continue;
    }
    const parsed = parseCidr(item.trim());
    if (parsed.ok) seen.add(parsed.cidr);
    else bad.push(parsed.error.includes(item.trim()) ? parsed.error : `${quote(item)}: ${parsed.error}`);
  }
  if (bad.length > 0) return fail('invalid_cidr', bad.join('; '));
  return pass([...seen]);
}

function checkRotateAfterDays(value: unknown): Check<number> {
  return checkInt({ min: LIMITS.rotateAfterDaysMin, max: LIMITS.rotateAfterDaysMax })(value);
}

const checkLimit = checkInt({ min: 1, max: LIMITS.limitMax });

function checkPriority(value: unknown): Check<number> {
  return checkInt({ min: 0, max: LIMITS.priorityMax })(value);
}

function checkInt(range: { min: number; max: number }): (value: unknown) => Check<number> {
  return (value) => {
    let n: number;
    if (typeof value === 'number') n = value;
    else if (typeof value === 'string' && INTEGER_TEXT.test(value.trim())) n = Number(value.trim());
    else return fail('invalid_type', `${quote(value)} is not an integer`);
    if (!Number.isSafeInteger(n)) return fail('invalid_type', `${quote(value)} is not an integer`);
    if (n < range.min || n > range.max) return fail('out_of_range', `must be between ${range.min} and ${range.max} (got ${n})`);
    return pass(n);
  };
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);

function checkBoolean(value: unknown): Check<boolean> {
  if (typeof value === 'boolean') return pass(value);
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return pass(true);
    if (FALSE_WORDS.has(word)) return pass(false);
  }
  return fail('invalid_type', `${quote(value)} is not a boolean (true or false)`);
}

function checkMatchType(value: unknown): Check<MatchType> {
  if (typeof value === 'string' && (MATCH_TYPES as readonly string[]).includes(value)) return pass(value as MatchType);
  return fail('invalid_choice', `${quote(value)} is not one of ${MATCH_TYPES.join(', ')}`);
}

function checkTenantType(value: unknown): Check<TenantType> {
  if (typeof value === 'string' && (TENANT_TYPES as readonly string[]).includes(value)) return pass(value as TenantType);
  return fail('invalid_choice', `${quote(value)} is not one of ${TENANT_TYPES.join(', ')}`);
}

/** Pattern text before its match type is known: a string, not blank, bounded. Not trimmed (spaces may matter). */
function checkPatternText(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (value.length === 0) return fail('too_short', 'must not be empty');
  if (value.length > LIMITS.patternMaxChars) return fail('too_long', `must be at most ${LIMITS.patternMaxChars} characters`);
  if (UNPRINTABLE.test(value)) return fail('invalid_format', 'must not contain control characters');
  return pass(value);
}

function checkPatternFor(f: Fields, matchType: MatchType, pattern: string): void {
  const problem = validatePattern(matchType, pattern);
  if (problem !== null) f.add('pattern', 'invalid_pattern', `pattern: ${problem} (${matchType} ${quote(pattern)})`);
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

function checkDurationMs(range: { min: number; max: number }): (value: unknown) => Check<number> {
  return (value) => {
    if (typeof value !== 'string') return fail('invalid_type', 'must be a duration such as 90d, 24h, 30m, 1h30m');
    const ms = parseHumanDurationMs(value.trim());
    if (ms === null) return fail('invalid_duration', `${quote(value)} is not a duration (examples: 90d, 24h, 30m, 45s, 1h30m)`);
    if (ms < range.min || ms > range.max) {
      return fail('out_of_range', `must be between ${formatMs(range.min)} and ${formatMs(range.max)}`);
    }
    return pass(ms);
  };
}

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|z|[+-]\d{2}:\d{2}))?$/;

/** ISO 8601 date (`2026-01-31`, midnight UTC) or date-time with an explicit zone; impossible dates rejected. */
export function parseIsoInstantMs(text: string): number | null {
  const m = ISO_INSTANT.exec(text.trim());
  if (!m) return null;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return null;
  if (m[4] !== undefined && m[7] === undefined) return null;
  const ms = Date.parse(m[4] === undefined ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z` : text.trim().replace(' ', 'T'));
  return Number.isFinite(ms) ? ms : null;
}

function checkFutureInstant(nowMs: number): (value: unknown) => Check<Date> {
  return (value) => {
    let ms: number | null = null;
    if (value instanceof Date) ms = Number.isFinite(value.getTime()) ? value.getTime() : null;
    else if (typeof value === 'string') ms = parseIsoInstantMs(value);
    if (ms === null) return fail('invalid_date', `${quote(value)} is not an ISO 8601 date (2026-01-31 or 2026-01-31T12:00:00Z)`);
    if (ms <= nowMs) return fail('in_past', `${quote(value)} is not in the future`);
    return pass(new Date(ms));
  };
}

/** `expiresIn` (duration from now) or `expiresAt` (instant); in a patch, null in either removes the expiry. */
function readExpiry(f: Fields, nowMs: number, patch: boolean): Date | null | undefined {
  const hasIn = f.has('expiresIn');
  const hasAt = f.has('expiresAt');
  if (hasIn && hasAt) {
    f.add('expiresAt', 'conflicting_fields', 'expiresAt: give expiresIn or expiresAt, not both');
    return undefined;
  }
  if (hasIn) {
    const ms = f.required('expiresIn', nullable(checkDurationMs({ min: 1000, max: LIMITS.expiresInMaxMs })));
    if (ms === undefined) return undefined;
    return ms === null ? (patch ? null : undefined) : new Date(nowMs + ms);
  }
  if (hasAt) {
    const at = f.required('expiresAt', nullable(checkFutureInstant(nowMs)));
    return at === null && !patch ? undefined : at;
  }
  return undefined;
}

function nullable<T>(check: (value: unknown) => Check<T>): (value: unknown) => Check<T | null> {
  return (value) => (value === null ? pass(null) : check(value));
}

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

/** Reads fields of one input object and collects every error. */
class Fields {
  readonly errors: FieldError[] = [];

  private constructor(private readonly input: Readonly<Record<string, unknown>>) {}

  /** null when `input` is not a plain object; unknown field names are errors. */
  static of(input: unknown, known: readonly string[]): Fields | null {
    if (!isPlainObject(input)) return null;
    const fields = new Fields(input);
    for (const key of Object.keys(input)) {
      if (!known.includes(key)) fields.add(key, 'unknown_field', `${quote(key)}: unknown field; known: ${known.join(', ')}`);
    }
    return fields;
  }

  /** Present and not undefined (a JSON null counts as present). */
  has(field: string): boolean {
    return this.input[field] !== undefined;
  }

  add(field: string, code: ValidationCode, message: string): void {
    this.errors.push({ field, code, message });
  }

  required<T>(field: string, check: (value: unknown) => Check<T>): T | undefined {
    if (!this.has(field)) {
      this.add(field, 'required', `${field} is required`);
      return undefined;
    }
    return this.optional(field, check);
  }

  optional<T>(field: string, check: (value: unknown) => Check<T>): T | undefined {
    if (!this.has(field)) return undefined;
    const result = check(this.input[field]);
    if (result.ok) return result.value;
    this.add(field, result.code, `${field}: ${result.message}`);
    return undefined;
  }

  requireSome(): void {
    if (Object.keys(this.input).every((k) => this.input[k] === undefined)) {
      this.add('body', 'empty_patch', 'nothing to change: give at least one field');
    }
  }

  result<T>(build: () => T): Validated<T> {
    return this.errors.length > 0 ? { ok: false, errors: this.errors } : { ok: true, value: build() };
  }
}

function notAnObject(): Validated<never> {
  return failure('body', 'invalid_type', 'input must be an object');
}

function failure(field: string, code: ValidationCode, message: string): Validated<never> {
  return { ok: false, errors: [{ field, code, message }] };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function splitList(text: string): string[] {
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A rejected value for a message: JSON-quoted (control characters escaped), at most 64 characters. */
function quote(value: unknown): string {
  if (value === undefined) return 'undefined';
  let text: string;
  try {
    text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  const short = [...text].length > 64 ? `${[...text].slice(0, 61).join('')}...` : text;
  return JSON.stringify(short);
}

function formatMs(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
