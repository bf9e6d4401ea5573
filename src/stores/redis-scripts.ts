// Lua scripts of the Redis rate-state store. They mirror src/core/capacity.ts: same checks, same order, same numbers
// (the constants are interpolated from there so the two cannot drift); the contract suite runs against both.
// Shipped as TypeScript strings so they land in dist/ with the rest of the build.
//
// Keys of one quota subject (a client key or a tenant; see src/core/quota.ts), under its own hash tag:
//   <prefix>{kpq:<scope>:<id>}:w             ZSET    minute window: member = lease id, score = admission ms
//   <prefix>{kpq:<scope>:<id>}:d:<dayStart>  STRING  requests admitted in the day that starts at dayStart (ms)
//   <prefix>{kpq:<scope>:<id>}:t, :tc, :td:<dayStart>  token minute window and token day counters (see
//                                            ./redis-token-scripts.ts; only with token limits)
// A key's quota spans every pool, so its counters cannot share a pool's slot. On one Redis server ADMIT_LUA checks
// and charges the quotas together with the account in one script (one round trip). On a Redis Cluster the store
// reserves each quota first with QUOTA_RESERVE_LUA on the quota's own slot, then runs ADMIT_LUA on the pool's slot,
// and gives the reservations back with QUOTA_REFUND_LUA when the account admission fails: a counter is never above
// its limit (each reservation is atomic on its slot), at the price of a refused request briefly holding a unit.
//
// Keys of one account (all inside the pool's hash tag, so a multi-account script stays in one Cluster slot):
//   <prefix>{kp:<pool>}:<accountId>:s  HASH  cooldown, health, circuit, invalid hold, learned limits (fields below)
//   <prefix>{kp:<pool>}:<accountId>:w  ZSET  RPM sliding-window log: member = lease id, score = admission ms
//   <prefix>{kp:<pool>}:<accountId>:l  ZSET  in-flight leases: member = lease id, score = expiry ms
//   <prefix>{kp:<pool>}:<accountId>:t, :tc  token window of the tpm_limit (./redis-token-scripts.ts)
// Hash fields: cd cooldownUntilMs, h health, cf consecutiveFailures, co circuitOpenUntilMs (absent/0 = closed),
//   oc openCount, pr halfOpenProbeLeaseId, inv invalidUntilMs, rl/rr/rra requests limit/remaining/resetAtMs,
//   tl/tr/tra tokens limit/remaining/resetAtMs. Absent = 0 / null as in AccountState.
// Shared learned slots (src/core/learned-state.ts), in the same hash tag (single slot still):
//   <prefix>{kp:<pool>}:~s:<scope>             HASH  cd, rl, rr, rra, tl, tr, tra of a quota scope (every model)
//   <prefix>{kp:<pool>}:~s:<scope>:m:<model>   HASH  the same per (scope, model)
//   <prefix>{kp:<pool>}:~a:<accountId>:m:<model>  HASH  per (account, model) for an account without a scope
// Names are percent-encoded. An account without scope on a request without per-model state uses the cd/rl/... fields
// of its own :s hash (the "slot key" the scripts get is then the state hash itself). A slot key exists only once an
// observation wrote to it, and lives until its cooldown and reported resets are past plus a minute (at least
// slotTtlMs: stateTtlMs for a scope's slot, a minute for a per-model one), so per-model keys are bounded in time.
//
// Time: every script reads the Redis server clock with TIME (Redis 7 always replicates script effects, so a script
// that reads TIME and then writes is allowed and replicas/AOF see the writes, not the script). Replica clocks do not
// matter: instants supplied by a replica (cooldown-until, reset-at) are shifted by (redisNow - replicaNow), and
// instants returned are shifted back by the store. A non-empty "clock" argument replaces TIME; only the test factory
// enables that (RedisRateStateStoreOptions.testUseRequestClock), production code never sends it.
import {
  CIRCUIT_BASE_MS,
  CIRCUIT_MAX_MS,
  FAILURE_COUNT_CAP,
  INVALID_HOLD_MS,
  MAX_OPEN_COUNT,
  UNHEALTHY_AFTER_FAILURES,
  UNLIMITED_LOG_CAP,
} from '../core/capacity.js';
import { DEFAULT_COOLDOWN_MS } from '../core/response.js';
import { PRELUDE } from './redis-prelude.js';
import { QUOTA_FNS } from './redis-quota-scripts.js';
import { reconcileLua } from './redis-token-scripts.js';

export { QUOTA_INSPECT_LUA, QUOTA_REFUND_LUA, QUOTA_RESERVE_LUA } from './redis-quota-scripts.js';

/**
 * KEYS: 9 per quota subject (see quotaAt), then 6 per candidate (state hash, window zset, lease zset, learned slot
 * hash = the state hash when the account's own, token zset, token hash), in strategy order.
 * ARGV: leaseId, leaseMs, leastLoaded ('1'/'0'), clock override ('' = TIME), stateTtlMs, reserve (fraction, '0' =
 *       none), number of quota subjects, day bounds b0 b1 b2 b3, tokens ('0' = not counted), then 4 per quota
 *       subject: rpmLimit, rpdLimit, tpmLimit, tpdLimit ('' = no limit), then 4 per candidate: accountId, rpmLimit,
 *       tpmLimit, maxConcurrency ('' = no limit).
 * Returns {1, accountId, nowMs} or {0, 'exhausted'|'unhealthy'|'shed', retryAtMs (-1 = unknown), nowMs} or
 * {0, 'quota', retryAtMs (-1 = never by itself), nowMs, subject index (1-based), QuotaWindow}.
 */
export const ADMIT_LUA = `${PRELUDE}
local UNLIMITED_LOG_CAP = ${UNLIMITED_LOG_CAP}
local leaseId = ARGV[1]
local leaseMs = tonumber(ARGV[2])
local leastLoaded = ARGV[3] == '1'
local now = clock(ARGV[4])
local stateTtlMs = tonumber(ARGV[5])
local reserve = tonumber(ARGV[6])
local nq = tonumber(ARGV[7])
local tokens = tonumber(ARGV[12])
local ko = nq * 9
local ao = 12 + nq * 4
local n = (#KEYS - ko) / 6
${QUOTA_FNS}
-- quota.ts admitWithQuotas: every quota must have room before any account is looked at.
local quotas = {}
local dayEnd = 0
if nq > 0 then
  local dayIndex, _
  dayIndex, _, dayEnd = pickDay(tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]))
  for j = 1, nq do
    local q = quotaAt((j - 1) * 9, 9 + j * 4, dayIndex)
    local window, freeAt = quotaBlock(q, dayEnd)
    if window then return {0, 'quota', freeAt, now, j, window} end
    quotas[j] = q
  end
end

local cands = {}
-- Reads one candidate's state after pruning expired window entries and leases (capacity.ts pruneState).
local function load(i)
  local c = cands[i]
  if c then return c end
  local sk, wk, lk, ek = KEYS[ko + i * 6 - 5], KEYS[ko + i * 6 - 4], KEYS[ko + i * 6 - 3], KEYS[ko + i * 6 - 2]
  local a = ao + (i - 1) * 4
  local f
  if ek == sk then
    f = redis.call('HMGET', sk, 'cd', 'co', 'pr', 'inv', 'rl', 'rr', 'rra', 'tl', 'tr', 'tra')
  else
    -- Cooldown and learned limits from the scope/model slot; circuit, probe and invalid hold from the account.
    local x = redis.call('HMGET', sk, 'co', 'pr', 'inv')
    local e = redis.call('HMGET', ek, 'cd', 'rl', 'rr', 'rra', 'tl', 'tr', 'tra')
    f = {e[1], x[1], x[2], x[3], e[2], e[3], e[4], e[5], e[6], e[7]}
  end
  redis.call('ZREMRANGEBYSCORE', wk, '-inf', now - WINDOW_MS)
  redis.call('ZREMRANGEBYSCORE', lk, '-inf', now)
  c = {
    id = ARGV[a + 1], rpm = num(ARGV[a + 2]), tpm = num(ARGV[a + 3]), conc = num(ARGV[a + 4]),
    sk = sk, wk = wk, lk = lk, ek = ek, tzk = KEYS[ko + i * 6 - 1], thk = KEYS[ko + i * 6],
    cd = num(f[1]) or 0, co = num(f[2]) or 0, pr = f[3], inv = num(f[4]) or 0,
    rl = num(f[5]), rr = num(f[6]), rra = num(f[7]), tl = num(f[8]), tr = num(f[9]), tra = num(f[10]),
    count = redis.call('ZCARD', wk), inflight = redis.call('ZCARD', lk), tsum = 0,
  }
  -- capacity.ts pruneState: the token window too (only read when the request counts tokens against a tpm limit).
  if tokens > 0 and c.tpm then c.tsum = tokenPrune(c.tzk, c.thk, now - WINDOW_MS) end
  cands[i] = c
  return c
end

-- capacity.ts capacityOf: returns nil when there is room, else reason and freeAtMs (nil = unknown).
local function capacity(c)
  if c.inv > now then return 'invalid', nil end
  if c.co ~= 0 then
    if c.co > now then return 'circuit_open', c.co end
    if c.pr and redis.call('ZSCORE', c.lk, c.pr) then return 'circuit_open', nil end
  end
  if c.cd > now then return 'cooldown', c.cd end
  if c.rr and c.rr <= 0 and c.rra and c.rra > now then return 'provider_requests', c.rra end
  if c.tr and c.tr <= 0 and c.tra and c.tra > now then return 'tpm', c.tra end
  if c.rpm and c.count >= c.rpm then
    if c.count == 0 then return 'rpm', nil end
    local oldest = redis.call('ZRANGE', c.wk, 0, 0, 'WITHSCORES')
    return 'rpm', tonumber(oldest[2]) + WINDOW_MS
  end
  if tokens > 0 and c.tpm then
    local blocked, freeAt = tokenBlock(c.tzk, c.thk, c.tpm, tokens)
    if blocked then return 'tpm', freeAt end
  end
  if c.conc and c.inflight >= c.conc then return 'concurrency', nil end
  return nil, nil
end

local function learnedActive(remaining, resetAt)
  return remaining ~= nil and (resetAt == nil or resetAt > now)
end

-- capacity.ts fraction / remainingScore.
local function fraction(remaining, limit)
  if remaining <= 0 then return 0 end
  if limit == nil or limit <= 0 then return 1 end
  if remaining >= limit then return 1 end
  return remaining / limit
end
local function score(c)
  local s = 1
  if learnedActive(c.rr, c.rra) then
    local lim = c.rl
    if lim == nil then lim = c.rpm end
    s = math.min(s, fraction(c.rr, lim))
  end
  if learnedActive(c.tr, c.tra) then
    local lim = c.tl
    if lim == nil then lim = c.tpm end
    s = math.min(s, fraction(c.tr, lim))
  end
  if c.rpm then s = math.min(s, fraction(c.rpm - c.count, c.rpm)) end
  if tokens > 0 and c.tpm then s = math.min(s, fraction(c.tpm - c.tsum, c.tpm)) end
  if c.conc then s = math.min(s, fraction(c.conc - c.inflight, c.conc)) end
  return s
end

-- capacity.ts reserveShortfall: short (true when admitting leaves less than the reserve somewhere) and the latest reset
-- of the dimensions below it (nil = unknown).
-- capacity.ts reserveApplies: a known limit whose reserved share is at least one unit.
local function applies(limit)
  return limit ~= nil and limit * reserve >= 1
end
local function shortfall(c)
  local short, known, at = false, true, nil
  local function below(after, resetAt)
    if after >= reserve then return end
    short = true
    if not known then return end
    if resetAt == nil then
      known = false
      at = nil
    elseif at == nil or resetAt > at then
      at = resetAt
    end
  end
  if c.rr and c.rra and c.rra > now then
    local lim = c.rl
    if lim == nil then lim = c.rpm end
    if applies(lim) then below(fraction(c.rr - 1, lim), c.rra) end
  end
  if c.tr and c.tra and c.tra > now then
    local lim = c.tl
    if lim == nil then lim = c.tpm end
    if applies(lim) then below(fraction(c.tr, lim), c.tra) end
  end
  if applies(c.rpm) then
    local oldest = nil
    if c.count > 0 then oldest = tonumber(redis.call('ZRANGE', c.wk, 0, 0, 'WITHSCORES')[2]) + WINDOW_MS end
    below(fraction(c.rpm - c.count - 1, c.rpm), oldest)
  end
  if tokens > 0 and applies(c.tpm) then
    local after = fraction(c.tpm - c.tsum - tokens, c.tpm)
    if after < reserve then below(after, tokenFreeAt(c.tzk, c.thk, c.tsum, c.tpm * (1 - reserve), tokens)) end
  end
  if applies(c.conc) then below(fraction(c.conc - c.inflight - 1, c.conc), nil) end
  return short, at
end

local order = {}
for i = 1, n do order[i] = i end
if leastLoaded and n > 1 then
  local scores = {}
  for i = 1, n do scores[i] = score(load(i)) end
  table.sort(order, function(x, y)
    if scores[x] ~= scores[y] then return scores[x] > scores[y] end
    return x < y
  end)
end

local allUnhealthy = true
local unknown = false
local retryAt = nil
local shed = false
local shedAt = nil
for k = 1, n do
  local c = load(order[k])
  local reason, freeAt = capacity(c)
  local take = reason == nil
  if take and reserve > 0 then
    local short, at = shortfall(c)
    if short then
      take = false
      shed = true
      if at ~= nil and (shedAt == nil or at < shedAt) then shedAt = at end
    end
  end
  if take then
    for j = 1, nq do recordQuota(quotas[j], leaseId, dayEnd) end
    -- capacity.ts recordAdmission
    redis.call('ZADD', c.wk, now, leaseId)
    local cap = UNLIMITED_LOG_CAP
    if c.rpm then cap = math.max(c.rpm, 1) end
    if c.count + 1 > cap then redis.call('ZREMRANGEBYRANK', c.wk, 0, c.count - cap) end
    redis.call('ZADD', c.lk, now + leaseMs, leaseId)
    if c.co ~= 0 then redis.call('HSET', c.sk, 'pr', leaseId) end
    if learnedActive(c.rr, c.rra) and c.rr > 0 then redis.call('HSET', c.ek, 'rr', c.rr - 1) end
    if tokens > 0 then
      if c.tpm then tokenAdd(c.tzk, c.thk, leaseId, tokens) end
      if learnedActive(c.tr, c.tra) and c.tr > 0 then redis.call('HSET', c.ek, 'tr', math.max(0, c.tr - tokens)) end
    end
    extend(c.wk, WINDOW_MS + 1000)
    extend(c.lk, leaseMs + 1000)
    extend(c.sk, stateTtlMs)
    return {1, c.id, now}
  end
  if reason ~= nil and reason ~= 'invalid' then
    if reason ~= 'circuit_open' then allUnhealthy = false end
    if freeAt == nil then unknown = true
    elseif retryAt == nil or freeAt < retryAt then retryAt = freeAt end
  end
end
if shed then
  if shedAt == nil then return {0, 'shed', -1, now} end
  return {0, 'shed', shedAt, now}
end
local retry = -1
if not unknown and retryAt ~= nil then retry = retryAt end
local verdict = 'exhausted'
if allUnhealthy then verdict = 'unhealthy' end
return {0, verdict, retry, now}
`;

/**
 * KEYS: state hash, lease zset, learned slot hash (= the state hash when the account's own). ARGV: outcome,
 * cooldownUntilMs, requestsLimit, requestsRemaining, requestsResetAtMs, tokensLimit, tokensRemaining, tokensResetAtMs
 * ('' = null), callerNowMs, clock override, stateTtlMs, leaseId to release ('' = none), slotTtlMs.
 * capacity.ts releaseLease (when a lease id is given) then account-observation.ts applyObservation, atomically: the release rides on the
 * observation, so a finished request costs one command. Returns {nowMs, healthBefore, healthAfter}.
 */
export const OBSERVE_LUA = `${PRELUDE}
local sk = KEYS[1]
-- account-observation.ts applyObservation's slot: cooldown and learned limits go there, health/circuit/invalid stay in sk.
local ek = KEYS[3]
if ARGV[12] ~= '' then redis.call('ZREM', KEYS[2], ARGV[12]) end
local outcome = ARGV[1]
local now = clock(ARGV[10])
local shift = now - tonumber(ARGV[9])
local stateTtlMs = tonumber(ARGV[11])
local healthBefore = redis.call('HGET', sk, 'h') or 'healthy'
local function at(v)
  local x = num(v)
  if x == nil then return nil end
  return x + shift
end

-- account-observation.ts mergeLearned: reported fields replace, unreported keep.
local learned = { rl = num(ARGV[3]), rr = num(ARGV[4]), rra = at(ARGV[5]), tl = num(ARGV[6]), tr = num(ARGV[7]), tra = at(ARGV[8]) }
local furthest = now
for field, value in pairs(learned) do
  redis.call('HSET', ek, field, value)
end
if learned.rra and learned.rra > furthest then furthest = learned.rra end
if learned.tra and learned.tra > furthest then furthest = learned.tra end

if outcome == 'success' then
  redis.call('HSET', sk, 'cf', 0, 'h', 'healthy', 'co', 0, 'oc', 0)
  redis.call('HDEL', sk, 'pr')
elseif outcome == 'rate_limited' then
  local until_ = at(ARGV[2])
  if until_ == nil then until_ = now + ${DEFAULT_COOLDOWN_MS} end
  local cd = num(redis.call('HGET', ek, 'cd')) or 0
  if until_ > cd then
    redis.call('HSET', ek, 'cd', until_)
    cd = until_
  end
  if cd > furthest then furthest = cd end
end
-- furthest so far: the slot's latest instant; from here on the account's own (invalid hold, circuit).
if ek ~= sk then
  extend(ek, math.max(tonumber(ARGV[13]), furthest - now + 60000))
  furthest = now
end
if outcome == 'invalid_credential' or outcome == 'quota_exhausted' then
  local inv = num(redis.call('HGET', sk, 'inv')) or 0
  local hold = now + ${INVALID_HOLD_MS}
  if hold > inv then
    redis.call('HSET', sk, 'inv', hold)
    inv = hold
  end
  if inv > furthest then furthest = inv end
elseif outcome == 'server_error' then
  local f = redis.call('HMGET', sk, 'cf', 'co', 'oc')
  local cf = math.min((num(f[1]) or 0) + 1, ${FAILURE_COUNT_CAP})
  local co = num(f[2]) or 0
  local oc = num(f[3]) or 0
  local function openCircuit()
    co = now + math.min(${CIRCUIT_BASE_MS} * 2 ^ math.min(oc, ${MAX_OPEN_COUNT}), ${CIRCUIT_MAX_MS})
    oc = math.min(oc + 1, ${MAX_OPEN_COUNT})
    redis.call('HSET', sk, 'h', 'unhealthy', 'co', co, 'oc', oc)
    redis.call('HDEL', sk, 'pr')
  end
  if co ~= 0 then
    if co <= now then openCircuit() end
  elseif cf >= ${UNHEALTHY_AFTER_FAILURES} then
    openCircuit()
  else
    redis.call('HSET', sk, 'h', 'degraded')
  end
  redis.call('HSET', sk, 'cf', cf)
  if co > furthest then furthest = co end
end
-- Keep the hash at least stateTtlMs, and past every instant it still holds (a daily reset, a long cooldown).
extend(sk, math.max(stateTtlMs, furthest - now + 60000))
return {now, healthBefore, redis.call('HGET', sk, 'h') or 'healthy'}
`;

/**
 * KEYS: 4 per account (state hash, window zset, lease zset, learned slot hash: the state hash itself unless the
 * account has a quota scope). ARGV: clock override.
 * Read-only. Returns {nowMs, then per account: h, inFlight, cd, co, requestsInWindow, inv, rl, rr, rra, tl, tr, tra};
 * cd and the learned limits come from the slot, as ADMIT_LUA reads them.
 */
export const INSPECT_LUA = `${PRELUDE}
local now = clock(ARGV[1])
local out = {now}
for i = 1, #KEYS / 4 do
  local sk, wk, lk, ek = KEYS[i * 4 - 3], KEYS[i * 4 - 2], KEYS[i * 4 - 1], KEYS[i * 4]
  local f = redis.call('HMGET', sk, 'h', 'co', 'inv')
  local e = redis.call('HMGET', ek, 'cd', 'rl', 'rr', 'rra', 'tl', 'tr', 'tra')
  out[#out + 1] = f[1]
  out[#out + 1] = redis.call('ZCOUNT', lk, '(' .. now, '+inf')
  out[#out + 1] = e[1]
  out[#out + 1] = f[2]
  out[#out + 1] = redis.call('ZCOUNT', wk, '(' .. (now - WINDOW_MS), '+inf')
  out[#out + 1] = f[3]
  for j = 2, 7 do out[#out + 1] = e[j] end
end
return out
`;

/**
 * KEYS: lease zset. ARGV: leaseId, leaseMs, clock override.
 * capacity.ts renewLease: a live lease's expiry moves to now + leaseMs; a released or expired one stays gone.
 * Returns 1 when renewed, 0 otherwise.
 */
export const RENEW_LUA = `${PRELUDE}
local lk = KEYS[1]
local now = clock(ARGV[3])
local leaseMs = tonumber(ARGV[2])
local current = num(redis.call('ZSCORE', lk, ARGV[1]))
if current == nil or current <= now then return 0 end
if now + leaseMs > current then redis.call('ZADD', lk, 'XX', now + leaseMs, ARGV[1]) end
extend(lk, leaseMs + 1000)
return 1
`;

/**
 * Fields resetAccount deletes (health, cooldown, circuit, invalid hold, learned provider limits, as capacity.ts
 * resetHealth); windows and leases stay.
 */
export const RESET_FIELDS = ['cd', 'h', 'cf', 'co', 'oc', 'pr', 'inv', 'rl', 'rr', 'rra', 'tl', 'tr', 'tra'] as const;

/** Token reconcile (./redis-token-scripts.ts reconcileLua). */
export const RECONCILE_LUA = reconcileLua(PRELUDE);
