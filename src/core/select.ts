// Account ordering per pool strategy. The result is the order in which the rate-state store tries
// accounts; the store skips those cooling down, unhealthy or out of capacity, so this never filters.
import type { Account, ProviderPool, Strategy } from './types.js';

/**
 * Orders pool.accounts (active accounts only, ordered by tier then name) for one request.
 * cursor: a counter the caller advances per request and pool, so round-robin rotations spread evenly.
 * randomUnit: a source of uniform numbers in [0, 1), injected so tests are deterministic.
 * limit: at most this many accounts, the head of the full order. Large pools would otherwise copy (and, for Redis,
 * ship) every account on every request although the first one with capacity is almost always near the front; the
 * caller asks again without a limit only when the whole window is blocked.
 */
export function orderCandidates(
  pool: ProviderPool,
  strategy: Strategy,
  cursor: number,
  randomUnit: () => number,
  limit = Number.POSITIVE_INFINITY,
): readonly Account[] {
  const accounts = pool.accounts;
  if (accounts.length <= 1) return accounts;
  const count = Math.min(accounts.length, Math.max(1, limit));
  switch (strategy) {
    case 'round-robin':
      return rotate(accounts, 0, accounts.length, cursor, [], count);
    case 'weighted-random':
      return count < accounts.length ? weightedWindow(accounts, randomUnit, count) : weightedShuffle(accounts, randomUnit);
    case 'priority':
      return rotateWithinTiers(accounts, cursor, count);
    case 'least-loaded':
      // The store reorders by learned remaining capacity, so it must see every account; tier order breaks ties.
      return accounts;
    default:
      return accounts;
  }
}

/**
 * How far the pool's cursor must move beyond its usual one step per request after `admittedId` served a request
 * ordered from `cursor`: the accounts skipped before it in its rotation (the whole pool for round-robin, its tier for
 * priority). The next rotation then starts right after the account that actually served, which keeps shares equal
 * when some accounts are skipped: with A, B, C and B cooling down, one step per request sends B's turns to C (A 1/3,
 * C 2/3); this sends A, C, A, C. A step count rather than a position, so concurrent decisions of one pool add up
 * instead of resetting each other. 0 for strategies that do not rotate.
 */
export function cursorSkips(pool: ProviderPool, strategy: Strategy, cursor: number, admittedId: string): number {
  if (strategy !== 'round-robin' && strategy !== 'priority') return 0;
  const accounts = strategy === 'priority' && !isSortedByTier(pool.accounts) ? [...pool.accounts].sort((a, b) => a.tier - b.tier) : pool.accounts;
  const index = accounts.findIndex((account) => account.id === admittedId);
  if (index < 0) return 0;
  let start = 0;
  let end = accounts.length;
  if (strategy === 'priority') {
    const tier = accounts[index]!.tier;
    start = index;
    while (start > 0 && accounts[start - 1]!.tier === tier) start--;
    end = index;
    while (end < accounts.length && accounts[end]!.tier === tier) end++;
  }
  const length = end - start;
  return positiveModulo(index - start - positiveModulo(cursor, length), length);
}

/** Appends accounts[start, end) rotated so that position (cursor mod length) comes first, until `into` holds `limit`. */
function rotate(
  accounts: readonly Account[],
  start: number,
  end: number,
  cursor: number,
  into: Account[],
  limit: number,
): Account[] {
  const length = end - start;
  const offset = positiveModulo(cursor, length);
  for (let index = 0; index < length && into.length < limit; index++) {
    into.push(accounts[start + ((offset + index) % length)] as Account);
  }
  return into;
}

/** Lowest tier first; round-robin by cursor inside each tier. */
function rotateWithinTiers(accounts: readonly Account[], cursor: number, limit: number): Account[] {
  const byTier = isSortedByTier(accounts) ? accounts : [...accounts].sort((a, b) => a.tier - b.tier);
  const ordered: Account[] = [];
  let tierStart = 0;
  for (let index = 1; index <= byTier.length && ordered.length < limit; index++) {
    if (index === byTier.length || byTier[index]?.tier !== byTier[tierStart]?.tier) {
      rotate(byTier, tierStart, index, cursor, ordered, limit);
      tierStart = index;
    }
  }
  return ordered;
}

/**
 * Weighted order without replacement (Efraimidis-Spirakis): each account draws key = ln(u) / weight
 * (the log of u^(1/weight), same order, no underflow), highest key first. The first account is picked
 * with probability weight / total, and the rest follow the same rule among the remaining ones.
 * Accounts with weight 0 (or an invalid weight) come last, in pool order: they serve only as a fallback.
 */
function weightedShuffle(accounts: readonly Account[], randomUnit: () => number): Account[] {
  const keyed: Array<{ readonly account: Account; readonly key: number }> = [];
  const zeroWeight: Account[] = [];
  for (const account of accounts) {
    if (!(account.weight > 0) || !Number.isFinite(account.weight)) {
      zeroWeight.push(account);
      continue;
    }
    keyed.push({ account, key: Math.log(openUnit(randomUnit())) / account.weight });
  }
  keyed.sort((a, b) => b.key - a.key);
  const ordered = keyed.map((item) => item.account);
  for (const account of zeroWeight) ordered.push(account);
  return ordered;
}

/**
 * A window of a large weighted pool without keying every account: the first account is drawn with probability
 * weight / total (exactly as the full shuffle draws it), the rest of the window follows it in pool order. Only the
 * fallbacks differ from the full shuffle, and only when the first draw has no capacity.
 */
function weightedWindow(accounts: readonly Account[], randomUnit: () => number, limit: number): Account[] {
  let total = 0;
  for (const account of accounts) if (account.weight > 0 && Number.isFinite(account.weight)) total += account.weight;
  if (total === 0) return accounts.slice(0, limit);
  let target = openUnit(randomUnit()) * total;
  let first = 0;
  for (; first < accounts.length; first++) {
    const weight = accounts[first]!.weight;
    if (!(weight > 0) || !Number.isFinite(weight)) continue;
    target -= weight;
    if (target <= 0) break;
  }
  return rotate(accounts, 0, accounts.length, Math.min(first, accounts.length - 1), [], limit);
}

// ln(0) is -Infinity, which would tie every account that drew 0; nudge into (0, 1).
function openUnit(unit: number): number {
  if (!(unit > 0)) return Number.MIN_VALUE;
  return unit >= 1 ? 1 - Number.EPSILON : unit;
}

function isSortedByTier(accounts: readonly Account[]): boolean {
  for (let index = 1; index < accounts.length; index++) {
    if ((accounts[index]?.tier ?? 0) < (accounts[index - 1]?.tier ?? 0)) return false;
  }
  return true;
}

function positiveModulo(value: number, modulus: number): number {
  const whole = Number.isFinite(value) ? Math.trunc(value) : 0;
  return ((whole % modulus) + modulus) % modulus;
}
