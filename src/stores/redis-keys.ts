// Key names of the Redis rate-state store (layout in ./redis-scripts.ts and ./redis-token-scripts.ts).
import type { DayBounds, QuotaRef, QuotaWindow } from '../ports.js';

/** Keys of one account: state hash, rpm window, leases, token window zset, token counts hash. */
export type AccountKeys = readonly [state: string, window: string, leases: string, tokens: string, tokenCounts: string];

/** Keys per quota subject in ADMIT_LUA and QUOTA_RESERVE_LUA (the scripts' quotaAt). */
export const QUOTA_KEYS = 9;

/** Braces inside a name would move or break the hash tag: escape them. */
export function escapeTag(name: string): string {
  return name.includes('{') || name.includes('}') || name.includes('%') ? encodeURIComponent(name) : name;
}

/** The five keys of one account; every key of a pool shares the `{kp:<pool>}` hash tag (one Cluster slot). */
export function accountKeys(keyPrefix: string, pool: string, accountId: string): AccountKeys {
  const base = `${keyPrefix}{kp:${escapeTag(pool)}}:${escapeTag(accountId)}:`;
  return [`${base}s`, `${base}w`, `${base}l`, `${base}t`, `${base}tc`];
}

/** A quota subject's keys share its own `{kpq:<scope>:<id>}` tag (a key's quota spans every pool). */
export function quotaBase(keyPrefix: string, subject: QuotaRef): string {
  return `${keyPrefix}{kpq:${subject.scope}:${escapeTag(subject.id)}}:`;
}

/**
 * A quota subject's QUOTA_KEYS keys written into keys[at..]: window zset, request day counters of the days b0, b1,
 * b2, token zset, token hash, token day counters of the days b0, b1, b2.
 */
export function quotaKeysInto(keyPrefix: string, keys: string[], at: number, subject: QuotaRef, bounds: DayBounds): string[] {
  const base = quotaBase(keyPrefix, subject);
  keys[at] = `${base}w`;
  keys[at + 1] = `${base}d:${bounds[0]}`;
  keys[at + 2] = `${base}d:${bounds[1]}`;
  keys[at + 3] = `${base}d:${bounds[2]}`;
  keys[at + 4] = `${base}t`;
  keys[at + 5] = `${base}tc`;
  keys[at + 6] = `${base}td:${bounds[0]}`;
  keys[at + 7] = `${base}td:${bounds[1]}`;
  keys[at + 8] = `${base}td:${bounds[2]}`;
  return keys;
}

/** The QuotaWindow a script named ('minute' for anything unexpected: the strictest reading is not needed here). */
export function quotaWindowOf(v: unknown): QuotaWindow {
  return v === 'day' || v === 'token_minute' || v === 'token_day' ? v : 'minute';
}

/**
 * The RECONCILE_LUA calls of one reconcile as [keys, '1' when the account's two token keys come first]: one call on
 * one server; on a Cluster one for the pool's slot and one per quota subject (its own slot). `dayStart` is the start
 * of the quota day the admission was charged to.
 */
export function reconcileCalls(
  keyPrefix: string,
  account: AccountKeys,
  quotas: readonly QuotaRef[],
  dayStart: number,
  cluster: boolean,
): Array<readonly [keys: string[], withAccount: '0' | '1']> {
  const quotaKeys = quotas.map((q) => {
    const base = quotaBase(keyPrefix, q);
    return [`${base}t`, `${base}tc`, `${base}td:${dayStart}`];
  });
  if (!cluster) return [[[account[3], account[4], ...quotaKeys.flat()], '1']];
  return [[[account[3], account[4]], '1'], ...quotaKeys.map((keys) => [keys, '0'] as const)];
}
