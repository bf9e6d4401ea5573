// Lua for token windows (src/core/token-window.ts), line for line: reserve at admission (inside ADMIT_LUA and
// QUOTA_RESERVE_LUA, see redis-scripts.ts) and reconcile (RECONCILE_LUA). The contract suites hold these and the
// memory store to the same behaviour.
//
// One token window = two keys in the owner's hash tag:
//   ...:t   ZSET  member = lease id, score = admission ms (the entry's position in the window)
//   ...:tc  HASH  lease id -> tokens reserved/reconciled, and '#' -> the sum of the window (kept with every change)
// Account: <prefix>{kp:<pool>}:<accountId>:t / :tc. Quota subject: <prefix>{kpq:<scope>:<id>}:t / :tc, plus
//   <prefix>{kpq:<scope>:<id>}:td:<dayStart>  STRING  tokens charged in the day that starts at dayStart (ms).
// Both keys of a window live WINDOW_MS + 1 s past its last reservation; a day counter until an hour past its day.
import { TOKEN_LOG_CAP } from '../core/token-window.js';

/**
 * token-window.ts TokenLog prune/add/adjust/freeAtMs and tokenBlock. Needs `now` and WINDOW_MS in scope (PRELUDE).
 * Entries leave in batches (a script may not unpack thousands of arguments at once).
 */
export const TOKEN_FNS = `
local TOKEN_LOG_CAP = ${TOKEN_LOG_CAP}
-- TokenLog.prune: entries admitted at or before cutoff leave, their tokens leave the sum. Returns the sum.
local function tokenPrune(zk, hk, cutoff)
  local sum = num(redis.call('HGET', hk, '#')) or 0
  local changed = false
  while true do
    local old = redis.call('ZRANGEBYSCORE', zk, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local counts = redis.call('HMGET', hk, unpack(old))
    for i = 1, #old do sum = sum - (num(counts[i]) or 0) end
    redis.call('HDEL', hk, unpack(old))
    redis.call('ZREM', zk, unpack(old))
    changed = true
  end
  if changed then
    if redis.call('ZCARD', zk) == 0 then sum = 0 end
    redis.call('HSET', hk, '#', sum)
  end
  return sum
end
-- TokenLog.freeAtMs: when enough of the oldest entries have left for tokens more to fit; nil = never by itself.
local function tokenFreeAt(zk, hk, sum, limit, tokens)
  if tokens > limit then return nil end
  local over = sum + tokens - limit
  local from = 0
  while true do
    local batch = redis.call('ZRANGE', zk, from, from + 499, 'WITHSCORES')
    if #batch == 0 then return nil end
    local ids = {}
    for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
    local counts = redis.call('HMGET', hk, unpack(ids))
    for i = 1, #ids do
      over = over - (num(counts[i]) or 0)
      if over <= 0 then return tonumber(batch[i * 2]) + WINDOW_MS end
    end
    from = from + 500
  end
end
-- tokenBlock: false when tokens more fit under limit; else true and the instant it frees (nil = never by itself).
local function tokenBlock(zk, hk, limit, tokens)
  local sum = tokenPrune(zk, hk, now - WINDOW_MS)
  if redis.call('ZCARD', zk) >= TOKEN_LOG_CAP then
    return true, tonumber(redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')[2]) + WINDOW_MS
  end
  if sum + tokens <= limit then return false, nil end
  return true, tokenFreeAt(zk, hk, sum, limit, tokens)
end
-- TokenLog.add (monotonic: never before the newest entry).
local function tokenAdd(zk, hk, id, tokens)
  local at = now
  local newest = redis.call('ZRANGE', zk, -1, -1, 'WITHSCORES')
  if #newest > 0 and tonumber(newest[2]) > at then at = tonumber(newest[2]) end
  redis.call('ZADD', zk, at, id)
  redis.call('HSET', hk, id, tokens)
  redis.call('HINCRBY', hk, '#', tokens)
  extend(zk, WINDOW_MS + 1000)
  extend(hk, WINDOW_MS + 1000)
end
-- TokenLog.adjust after a prune: an entry out of the window (or never charged) changes nothing; never below 0.
local function tokenAdjust(zk, hk, id, delta)
  tokenPrune(zk, hk, now - WINDOW_MS)
  local cur = num(redis.call('HGET', hk, id))
  if cur == nil then return end
  local nxt = math.max(0, cur + delta)
  redis.call('HSET', hk, id, nxt)
  redis.call('HINCRBY', hk, '#', nxt - cur)
end
`;

/**
 * capacity.ts reconcileAccountTokens and quota.ts reconcileQuotaTokens for one admission.
 * KEYS: when ARGV[4] is '1', the account's token zset and hash first; then 3 per quota subject: token zset, token
 * hash, token counter of the admission's day. ARGV: leaseId, deltaTokens, clock override ('' = TIME), '1'/'0'.
 * A day counter already gone (its day long over) is not recreated. Returns 1.
 */
export function reconcileLua(prelude: string): string {
  return `${prelude}
local now = clock(ARGV[3])
${TOKEN_FNS}
local id = ARGV[1]
local delta = tonumber(ARGV[2])
local k = 1
if ARGV[4] == '1' then
  tokenAdjust(KEYS[1], KEYS[2], id, delta)
  k = 3
end
while k + 2 <= #KEYS do
  tokenAdjust(KEYS[k], KEYS[k + 1], id, delta)
  -- INCRBY, not SET of a Lua number: a day count past 14 digits would be written in exponent form.
  if redis.call('EXISTS', KEYS[k + 2]) == 1 and redis.call('INCRBY', KEYS[k + 2], delta) < 0 then
    redis.call('SET', KEYS[k + 2], 0, 'KEEPTTL')
  end
  k = k + 3
end
return 1
`;
}
