// The helpers every rate-state Lua script starts with (see ./redis-scripts.ts for the time rules).
import { WINDOW_MS } from '../core/request-log.js';

export const PRELUDE = `
local WINDOW_MS = ${WINDOW_MS}
local function num(v)
  if not v or v == '' then return nil end
  return tonumber(v)
end
local function clock(override)
  if override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Lengthen a key's TTL to at least ms (never shorten: another caller may need it longer).
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
`;
