// Validation machinery shared by every entity schema (src/catalog/<entity>/schema.ts): the result type, field
// errors, the leaf checks (text, integers, booleans, CIDR lists, durations, instants) and the object reader.
//
// Every validator is a pure function: (input, nowMs?) -> { ok: true, value } with a typed, normalised value, or
// { ok: false, errors } listing every problem found as { field, code, message }. Bad input is a value, never an
// exception; `unwrap` turns a failure into a `ValidationFailure` for callers that prefer to throw. The CLI prints
// it (exit 2); the admin API renders it (src/admin/http-errors.ts). Nothing here knows about HTTP.
//
// Input objects use camelCase field names (`allowedIps`); `camelCaseKeys` converts a snake_case JSON body.
// Numbers and booleans are accepted as JSON values or as their canonical strings (the CLI passes strings).
// Messages may quote a rejected value (truncated and escaped) except upstream secrets, which are never echoed.
import { parseCidr } from '../core/cidr.js';
import { parseHumanDurationMs } from '../core/duration.js';
import { LIMITS, PRIORITY_RANGE, PROVIDER_SLUG, TENANT_ID, UUID } from './rules.js';

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

/** Bad operator input, as an exception for callers that throw. CLI: exit 2. Admin API: 422. */
export class ValidationFailure extends Error {
  readonly errors: readonly FieldError[];

  constructor(errors: readonly FieldError[]) {
    super(errors.length === 0 ? 'invalid input' : errors.map((e) => e.message).join('; '));
    this.name = 'ValidationFailure';
    this.errors = errors.length === 0 ? [{ field: 'body', code: 'invalid_type', message: 'invalid input' }] : errors;
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
// Field checks (leaves): value in, Check out
// ---------------------------------------------------------------------------------------------

export type Check<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: ValidationCode; readonly message: string };

export const pass = <T>(value: T): Check<T> => ({ ok: true, value });
export const fail = (code: ValidationCode, message: string): Check<never> => ({ ok: false, code, message });

/** Control characters, line/paragraph separators and bidi overrides (which disguise text in terminals and logs). */
export const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const INTEGER_TEXT = /^-?\d{1,16}$/;

export function checkText(maxChars: number, minChars = 1): (value: unknown) => Check<string> {
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

export const checkName = checkText(LIMITS.nameMaxChars);

export function checkTenantId(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (!TENANT_ID.test(value)) return fail('invalid_format', `${quote(value)} must be 1-64 characters of A-Z a-z 0-9 . _ -`);
  return pass(value);
}

export function checkProviderSlug(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  const slug = value.trim().toLowerCase();
  if (!PROVIDER_SLUG.test(slug)) return fail('invalid_format', `${quote(value)} is not a provider slug (lower-case letters, digits and -)`);
  return pass(slug);
}

export function checkUuid(value: unknown): Check<string> {
  if (typeof value !== 'string' || !UUID.test(value)) return fail('invalid_uuid', `${quote(value)} is not a UUID`);
  return pass(value.toLowerCase());
}

export function checkAllowedIps(value: unknown): Check<readonly string[]> {
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

export const checkLimit = checkInt({ min: LIMITS.limitMin, max: LIMITS.limitMax });
/** Tokens per day (tpd_limit, BIGINT). */
export const checkTokenDayLimit = checkInt({ min: LIMITS.limitMin, max: LIMITS.tokenDayLimitMax });

export function checkPriority(value: unknown): Check<number> {
  return checkInt(PRIORITY_RANGE)(value);
}

export function checkInt(range: { min: number; max: number }): (value: unknown) => Check<number> {
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

export function checkBoolean(value: unknown): Check<boolean> {
  if (typeof value === 'boolean') return pass(value);
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return pass(true);
    if (FALSE_WORDS.has(word)) return pass(false);
  }
  return fail('invalid_type', `${quote(value)} is not a boolean (true or false)`);
}

export function checkDurationMs(range: { min: number; max: number }): (value: unknown) => Check<number> {
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

export function checkFutureInstant(nowMs: number): (value: unknown) => Check<Date> {
  return (value) => {
    let ms: number | null = null;
    if (value instanceof Date) ms = Number.isFinite(value.getTime()) ? value.getTime() : null;
    else if (typeof value === 'string') ms = parseIsoInstantMs(value);
    if (ms === null) return fail('invalid_date', `${quote(value)} is not an ISO 8601 date (2026-01-31 or 2026-01-31T12:00:00Z)`);
    if (ms <= nowMs) return fail('in_past', `${quote(value)} is not in the future`);
    return pass(new Date(ms));
  };
}

export function nullable<T>(check: (value: unknown) => Check<T>): (value: unknown) => Check<T | null> {
  return (value) => (value === null ? pass(null) : check(value));
}

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

/** Reads fields of one input object and collects every error. */
export class Fields {
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

  /** The field's value as given, for checks that report on its parts (`window.days`). */
  raw(field: string): unknown {
    return this.input[field];
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

export function notAnObject(): Validated<never> {
  return failure('body', 'invalid_type', 'input must be an object');
}

export function failure(field: string, code: ValidationCode, message: string): Validated<never> {
  return { ok: false, errors: [{ field, code, message }] };
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
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
export function quote(value: unknown): string {
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

export function formatMs(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** A row id (UUID, any version); returned lower-case. */
export function validateId(value: unknown, field = 'id'): Validated<string> {
  const check = checkUuid(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}
