// Audit retention: what an operator may ask `keypool audit prune` for, validated.
import { LIMITS } from '../rules.js';
import { checkDurationMs, failure, type Validated } from '../validated.js';

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
