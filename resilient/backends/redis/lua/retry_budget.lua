-- retry_budget.lua: one decision of a retry budget shared through Redis.
--
-- The budget's counts live in one hash, in time slices of `width` seconds:
-- field 'c:<slice>' holds the calls (deposits) of a slice, 'r:<slice>' its
-- retries. The live window is the last `n` slices; older fields are deleted
-- as they are met. A retry is allowed while
--     reserve + ratio * calls - retries >= 1
-- over the live window, where reserve = min_per_second * ttl: the same rule as
-- resilient/_budget.py, for every process that uses the key.
--
-- KEYS[1]   the budget's hash.
-- ARGV[1]   now: seconds on the caller's clock, or '' for the server's TIME.
-- ARGV[2]   width: seconds per slice.
-- ARGV[3]   n: slices in the window.
-- ARGV[4]   ratio: retries deposited per call.
-- ARGV[5]   reserve: retries always available over the window.
-- ARGV[6]   deposits: calls to record now (a client sends them in batches).
-- ARGV[7]   spend: 1 to take one retry if there is one, 0 to only record/read.
-- ARGV[8]   keep_ms: the hash's TTL after a write (it is empty by then).
-- Returns   {granted (0/1), calls, retries, available as a string}.

local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local width = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local ratio = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local deposits = tonumber(ARGV[6])
local spend = tonumber(ARGV[7])
local keep = tonumber(ARGV[8])

local slice = math.floor(now / width)
local oldest = slice - n + 1
local raw = redis.call('HGETALL', KEYS[1])
local calls, retries = 0, 0
local stale = {}
for i = 1, #raw, 2 do
  local field = raw[i]
  local at = tonumber(string.sub(field, 3))
  if at == nil or at < oldest then
    stale[#stale + 1] = field
  elseif string.sub(field, 1, 1) == 'c' then
    calls = calls + tonumber(raw[i + 1])
  else
    retries = retries + tonumber(raw[i + 1])
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end

local wrote = false
if deposits > 0 then
  redis.call('HINCRBY', KEYS[1], 'c:' .. slice, deposits)
  calls = calls + deposits
  wrote = true
end
local granted = 0
if spend > 0 and reserve + ratio * calls - retries >= 1 then
  redis.call('HINCRBY', KEYS[1], 'r:' .. slice, 1)
  retries = retries + 1
  granted = 1
  wrote = true
end
if wrote then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return {granted, calls, retries, string.format('%.17g', reserve + ratio * calls - retries)}
