// Runtime settings (`keypool config set`, `PUT /admin/settings/:name`): names, types and ranges, validated.
// `priority.cache_ttl_sec` existed until wave 2 and was never read by anything (resolutions are computed per request
// from the compiled snapshot in ~200 ns, so there is nothing to cache): it is gone, and a stored row is ignored.
import { DEFAULT_PRIORITY_RESERVE } from '../../core/quota.js';
import type { PrioritySettings } from '../../core/types.js';
import { DEFAULT_OUTPUT_TOKENS } from '../../core/token-estimate.js';
import { PRIORITY_RANGE, QUEUE_MAX_LENGTH_RANGE, QUEUE_MAX_WAIT_MS_RANGE, TOKENS_DEFAULT_OUTPUT_RANGE } from '../rules.js';
import { checkBoolean, checkInt, checkPriority, fail, failure, isPlainObject, pass, quote, type Check, type Validated } from '../validated.js';

export const SETTING_NAMES = ['priority.enabled', 'priority.default_priority', 'priority.reserve', 'queue.max_wait_ms', 'queue.max_length', 'tokens.default_output'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

export type Setting =
  | { readonly name: 'priority.enabled'; readonly value: boolean }
  | { readonly name: 'priority.default_priority'; readonly value: number }
  | { readonly name: 'priority.reserve'; readonly value: readonly number[] }
  | { readonly name: 'queue.max_wait_ms'; readonly value: number }
  | { readonly name: 'queue.max_length'; readonly value: number }
  | { readonly name: 'tokens.default_output'; readonly value: number };

export type SettingValue = Setting['value'];

const PRIORITIES = PRIORITY_RANGE.max - PRIORITY_RANGE.min + 1;

/**
 * `priority.reserve`: the fraction (0 <= f < 1) of an account's capacity a request of each priority must leave free
 * for higher priorities. Given as an array of 10 fractions (index = priority), or an object naming some priorities
 * (`{"P7": 0.5}` or `{"7": 0.5}`) on top of the defaults; the CLI passes either as JSON text. Stored as the array.
 */
export function checkReserve(value: unknown): Check<readonly number[]> {
  let input = value;
  if (typeof input === 'string') {
    try {
      input = JSON.parse(input) as unknown;
    } catch {
      return fail('invalid_type', 'must be a JSON array of 10 fractions or an object like {"P7": 0.25}');
    }
  }
  const out = [...DEFAULT_PRIORITY_RESERVE];
  const entries: Array<[string, unknown]> = [];
  if (Array.isArray(input)) {
    if (input.length !== PRIORITIES) return fail('invalid_format', `must list ${PRIORITIES} fractions, one per priority 0-9 (got ${input.length})`);
    input.forEach((f, i) => entries.push([String(i), f]));
  } else if (isPlainObject(input)) {
    entries.push(...Object.entries(input));
  } else {
    return fail('invalid_type', 'must be a JSON array of 10 fractions or an object like {"P7": 0.25}');
  }
  for (const [name, fraction] of entries) {
    const match = /^[Pp]?(\d)$/.exec(name);
    if (match === null) return fail('invalid_format', `${quote(name)} is not a priority (P0-P9)`);
    if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction >= 1) {
      return fail('out_of_range', `P${match[1]!}: must be a fraction from 0 to below 1 (got ${quote(fraction)})`);
    }
    out[Number(match[1])] = fraction;
  }
  return pass(Object.freeze(out));
}

/** Each setting's value check: `priority.enabled` boolean, `priority.reserve` fractions, the others integers in their range (rules.ts). */
const SETTING_CHECKS: Readonly<Record<SettingName, (value: unknown) => Check<SettingValue>>> = {
  'priority.enabled': checkBoolean,
  'priority.default_priority': checkPriority,
  'priority.reserve': checkReserve,
  'queue.max_wait_ms': checkInt(QUEUE_MAX_WAIT_MS_RANGE),
  'queue.max_length': checkInt(QUEUE_MAX_LENGTH_RANGE),
  'tokens.default_output': checkInt(TOKENS_DEFAULT_OUTPUT_RANGE),
};

/** A runtime setting, its value checked (SETTING_CHECKS). */
export function validateSetting(name: unknown, value: unknown): Validated<Setting> {
  const known = validateSettingName(name);
  if (!known.ok) return known;
  const check = SETTING_CHECKS[known.value](value);
  if (!check.ok) return failure('value', check.code, `${known.value}: ${check.message}`);
  return { ok: true, value: { name: known.value, value: check.value } as Setting };
}

/** A setting name alone (for `config get NAME`); `enabled` without the `priority.` prefix is accepted too. */
export function validateSettingName(name: unknown): Validated<SettingName> {
  const full = typeof name === 'string' && !name.includes('.') ? `priority.${name}` : name;
  if (typeof full === 'string' && (SETTING_NAMES as readonly string[]).includes(full)) {
    return { ok: true, value: full as SettingName };
  }
  return failure('name', 'unknown_setting', `unknown setting ${quote(name)}; known: ${SETTING_NAMES.join(', ')}`);
}

/** The settings in force by their public names (`keypool config get`, `GET /admin/settings`). */
export function settingsByName(settings: PrioritySettings): Record<SettingName, SettingValue> {
  return {
    'priority.enabled': settings.enabled,
    'priority.default_priority': settings.defaultPriority,
    'priority.reserve': settings.reserve ?? DEFAULT_PRIORITY_RESERVE,
    'queue.max_wait_ms': settings.queueMaxWaitMs,
    'queue.max_length': settings.queueMaxLength,
    'tokens.default_output': settings.tokensDefaultOutput ?? DEFAULT_OUTPUT_TOKENS,
  };
}
