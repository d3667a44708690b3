-- release.lua: give back a booking whose caller stopped waiting early.
--
-- KEYS      as for acquire.lua.
-- ARGV[1]   now: seconds on the caller's clock, or '' for the server's TIME.
-- ARGV[2]   cost: the units booked.
-- ARGV[3]   wait_left: seconds the caller still had to wait (> 0); the booking
--           was for now + wait_left.
-- ARGV[4]   n: the number of limits, then six values per limit (see limits.lua).
-- Returns   1 if the key had state to give back to, else 0.
-- The keys' TTLs are left as they are.

local now = tonumber(ARGV[1]) or server_now()
local cost = tonumber(ARGV[2])
local at = now + tonumber(ARGV[3])
local limits = read_limits(5, tonumber(ARGV[4]))

local raw = redis.call('HMGET', KEYS[1], unpack(state_fields(limits)))
local expires = tonumber(raw[1])
if expires == nil or now >= expires then
  return 0
end
local set = {}
local gone = {}
for i = 1, #limits do
  local l = limits[i]
  local state = l.alg.release(l, l.alg.load(l, raw[i + 1]), now, at, cost)
  local value = l.alg.save(l, state, nil)
  if value == nil then
    gone[#gone + 1] = l.field
  else
    set[#set + 1] = l.field
    set[#set + 1] = value
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
end
if #gone > 0 then
  redis.call('HDEL', KEYS[1], unpack(gone))
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for k = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
return 1
