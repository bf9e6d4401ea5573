// Lua for request and token quotas of keys and tenants (src/core/quota.ts), line for line. ADMIT_LUA embeds QUOTA_FNS
// (one Redis server: quotas and account in one script); a Redis Cluster reserves each quota on its own slot with
// QUOTA_RESERVE_LUA first (see the key layout in ./redis-scripts.ts).
import { PRELUDE } from './redis-prelude.js';
import { TOKEN_FNS } from './redis-token-scripts.js';

export /**
 * quota.ts pickDay, quotaBlock and recordQuota. Needs \`now\` and \`tokens\` in scope. A subject q holds wk (window
 * zset), dk (the day counter of the day holding now), rpm, rpd (nil = unlimited), count (window size, set by
 * quotaBlock), and for tokens twk/thk (token window zset/hash), tdk (token counter of the day), tpm, tpd.
 */
const QUOTA_FNS = `${TOKEN_FNS}
-- quota.ts pickDay over the day bounds b0..b3: index (1..3) of the day holding now, its start and end.
local function pickDay(b0, b1, b2, b3)
  if now < b1 then return 1, b0, b1 end
  if now < b2 then return 2, b1, b2 end
  return 3, b2, b3
end
-- quota.ts quotaBlock: nil when there is room, else the window and the instant it frees (-1 = never by itself).
local function quotaBlock(q, dayEnd)
  q.count = 0
  if q.rpm then
    redis.call('ZREMRANGEBYSCORE', q.wk, '-inf', now - WINDOW_MS)
    q.count = redis.call('ZCARD', q.wk)
    if q.count >= q.rpm then
      local oldest = redis.call('ZRANGE', q.wk, 0, 0, 'WITHSCORES')
      return 'minute', tonumber(oldest[2]) + WINDOW_MS
    end
  end
  if q.rpd then
    local used = num(redis.call('GET', q.dk)) or 0
    if used >= q.rpd then return 'day', dayEnd end
  end
  if tokens > 0 then
    if q.tpm then
      local blocked, freeAt = tokenBlock(q.twk, q.thk, q.tpm, tokens)
      if blocked then return 'token_minute', freeAt or -1 end
    end
    if q.tpd then
      local used = num(redis.call('GET', q.tdk)) or 0
      if used + tokens > q.tpd then
        if tokens > q.tpd then return 'token_day', -1 end
        return 'token_day', dayEnd
      end
    end
  end
  return nil, nil
end
-- quota.ts recordQuota
local function recordQuota(q, leaseId, dayEnd)
  if q.rpm then
    redis.call('ZADD', q.wk, now, leaseId)
    local cap = math.max(q.rpm, 1)
    if q.count + 1 > cap then redis.call('ZREMRANGEBYRANK', q.wk, 0, q.count - cap) end
    extend(q.wk, WINDOW_MS + 1000)
  end
  if q.rpd then
    redis.call('INCR', q.dk)
    extend(q.dk, dayEnd - now + 3600000)
  end
  if tokens > 0 then
    if q.tpm then tokenAdd(q.twk, q.thk, leaseId, tokens) end
    if q.tpd then
      redis.call('INCRBY', q.tdk, tokens)
      extend(q.tdk, dayEnd - now + 3600000)
    end
  end
end
-- The subject j (1-based) of a script whose quota KEYS come 9 per subject (window zset, day counters b0 b1 b2, token
-- zset, token hash, token day counters b0 b1 b2) and ARGV 4 per subject from index a: rpm, rpd, tpm, tpd.
local function quotaAt(base, a, dayIndex)
  return {
    wk = KEYS[base + 1], dk = KEYS[base + 1 + dayIndex], twk = KEYS[base + 5], thk = KEYS[base + 6], tdk = KEYS[base + 6 + dayIndex],
    rpm = num(ARGV[a]), rpd = num(ARGV[a + 1]), tpm = num(ARGV[a + 2]), tpd = num(ARGV[a + 3]),
  }
end
`;

/**
 * Redis Cluster only (see the key layout above): quota.ts quotaBlock then recordQuota for ONE subject, on its slot.
 * KEYS: the subject's 9 (see quotaAt). ARGV: leaseId, clock override, b0, b1, b2, b3, rpmLimit, rpdLimit, tpmLimit,
 * tpdLimit ('' = none), tokens. Returns {1, day index (1..3), nowMs} or {0, QuotaWindow, retryAtMs (-1 = never),
 * nowMs}.
 */
export const QUOTA_RESERVE_LUA = `${PRELUDE}
local now = clock(ARGV[2])
local tokens = tonumber(ARGV[11])
${QUOTA_FNS}
local dayIndex, _, dayEnd = pickDay(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
local q = quotaAt(0, 7, dayIndex)
local window, freeAt = quotaBlock(q, dayEnd)
if window then return {0, window, freeAt, now} end
recordQuota(q, ARGV[1], dayEnd)
return {1, dayIndex, now}
`;

/**
 * Redis Cluster only: gives back what QUOTA_RESERVE_LUA charged for a request the accounts then refused.
 * KEYS: window zset, the day counter it incremented, token zset, token hash, the token day counter it charged.
 * ARGV: leaseId, '1' when the day counter was incremented, tokens charged to the token day counter ('0' = none).
 */
export const QUOTA_REFUND_LUA = `
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used > 0 then redis.call('DECR', KEYS[2]) end
end
local reserved = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if reserved > 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('HINCRBY', KEYS[4], '#', -reserved)
end
local dayTokens = tonumber(ARGV[3])
if dayTokens > 0 and redis.call('EXISTS', KEYS[5]) == 1 and redis.call('DECRBY', KEYS[5], dayTokens) < 0 then
  redis.call('SET', KEYS[5], 0, 'KEEPTTL')
end
return 1
`;

/**
 * Read-only quota usage (admin). KEYS: the subject's 9 (see quotaAt). ARGV: clock override, b0..b3.
 * Returns {nowMs, requests in the minute window, requests of the day holding now, day start, day end, tokens in the
 * minute window (the hash's sum less entries already out of the window and not yet pruned), tokens of the day}.
 */
export const QUOTA_INSPECT_LUA = `${PRELUDE}
local now = clock(ARGV[1])
local tokens = 0
${QUOTA_FNS}
local dayIndex, dayStart, dayEnd = pickDay(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local tokenMinute = num(redis.call('HGET', KEYS[6], '#')) or 0
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - WINDOW_MS, 'LIMIT', 0, 500)
if #old > 0 then
  local counts = redis.call('HMGET', KEYS[6], unpack(old))
  for i = 1, #old do tokenMinute = tokenMinute - (num(counts[i]) or 0) end
end
return {now, redis.call('ZCOUNT', KEYS[1], '(' .. (now - WINDOW_MS), '+inf'), num(redis.call('GET', KEYS[1 + dayIndex])) or 0, dayStart, dayEnd,
  math.max(0, tokenMinute), num(redis.call('GET', KEYS[6 + dayIndex])) or 0}
`;
