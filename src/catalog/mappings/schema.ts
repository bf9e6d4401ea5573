// Priority mappings (client key pattern -> priority and tenant): what an operator may ask for, validated. Used by
// the CLI, the admin API and the mapping DAO. Regex patterns go through the core's safety rule.
import { MAX_PATTERN_LENGTH, validatePattern, type ActiveWindow } from '../../core/priority/index.js';
import { MATCH_TYPES, type MatchType } from '../../core/types.js';
import { LIMITS } from '../rules.js';
import { checkWindowIn } from './window.js';
import {
  checkBoolean,
  checkName,
  checkPriority,
  checkTenantId,
  checkText,
  fail,
  Fields,
  notAnObject,
  nullable,
  pass,
  quote,
  UNPRINTABLE,
  type Check,
  type Validated,
} from '../validated.js';

export type TenantType = 'internal' | 'external';
export const TENANT_TYPES: readonly TenantType[] = ['internal', 'external'];

/** A new mapping. Optional fields may be left out by code that builds one directly (tests, the demo seed). */
export interface NewMapping {
  readonly pattern: string;
  readonly matchType: MatchType;
  /** 0 = highest (PRIORITY_RANGE). */
  readonly priority: number;
  readonly tenantId?: string | null;
  readonly tenantName?: string | null;
  readonly tenantType?: TenantType | null;
  readonly description?: string | null;
  readonly enabled?: boolean;
  /** Applies only while this window is open (src/core/priority/window.ts); null or absent: always. */
  readonly window?: ActiveWindow | null;
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
  readonly window?: ActiveWindow | null;
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
  'window',
];

/** A new priority mapping; regex patterns go through the core's safety check. */
export function validateNewMapping(input: unknown): Validated<Required<NewMapping>> {
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
  const window = checkWindowIn(f) ?? null;
  return f.result(() => ({
    pattern: pattern!,
    matchType: matchType!,
    priority: priority!,
    tenantId,
    tenantName,
    tenantType,
    description,
    enabled,
    window,
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
  if (f.has('window')) patch.window = checkWindowIn(f);
  f.requireSome();
  return f.result(() => patch);
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
  if (value.length > MAX_PATTERN_LENGTH) return fail('too_long', `must be at most ${MAX_PATTERN_LENGTH} characters`);
  if (UNPRINTABLE.test(value)) return fail('invalid_format', 'must not contain control characters');
  return pass(value);
}

function checkPatternFor(f: Fields, matchType: MatchType, pattern: string): void {
  const problem = validatePattern(matchType, pattern);
  if (problem !== null) f.add('pattern', 'invalid_pattern', `pattern: ${problem} (${matchType} ${quote(pattern)})`);
}
