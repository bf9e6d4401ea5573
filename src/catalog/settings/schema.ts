// Runtime settings (`keypool config set`, `PUT /admin/settings/:name`): names, types and ranges, validated.
// `priority.cache_ttl_sec` existed until wave 2 and was never read by anything (resolutions are computed per request
// from the compiled snapshot in ~200 ns, so there is nothing to cache): it is gone, and a stored row is ignored.
import type { PrioritySettings } from '../../core/types.js';
import { QUEUE_MAX_LENGTH_RANGE, QUEUE_MAX_WAIT_MS_RANGE } from '../rules.js';
import { checkBoolean, checkInt, checkPriority, failure, quote, type Check, type Validated } from '../validated.js';

export const SETTING_NAMES = ['priority.enabled', 'priority.default_priority', 'queue.max_wait_ms', 'queue.max_length'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

export type Setting =
  | { readonly name: 'priority.enabled'; readonly value: boolean }
  | { readonly name: 'priority.default_priority'; readonly value: number }
  | { readonly name: 'queue.max_wait_ms'; readonly value: number }
  | { readonly name: 'queue.max_length'; readonly value: number };

/** Each setting's value check: `priority.enabled` boolean, the others integers in their range (rules.ts). */
const SETTING_CHECKS: Readonly<Record<SettingName, (value: unknown) => Check<boolean | number>>> = {
  'priority.enabled': checkBoolean,
  'priority.default_priority': checkPriority,
  'queue.max_wait_ms': checkInt(QUEUE_MAX_WAIT_MS_RANGE),
  'queue.max_length': checkInt(QUEUE_MAX_LENGTH_RANGE),
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
export function settingsByName(settings: PrioritySettings): Record<SettingName, boolean | number> {
  return {
    'priority.enabled': settings.enabled,
    'priority.default_priority': settings.defaultPriority,
    'queue.max_wait_ms': settings.queueMaxWaitMs,
    'queue.max_length': settings.queueMaxLength,
  };
}
