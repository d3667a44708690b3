-- acquire.lua: take `cost` units from every limit of one key, or from none.
--
-- KEYS[1]   hash: the key's state under one set of limits. Field 'x' is the
--           time (seconds) at which the state is empty again and is forgotten;
--           field i holds limit i's state (see the algorithm files).
-- KEYS[2..] sorted sets: the logs of the sliding-log limits, in limit order.
-- ARGV[1]   now: seconds on the caller's clock, or '' for the server's TIME.
-- ARGV[2]   cost: units to take, 1 <= cost <= every limit's capacity.
-- ARGV[3]   max_wait: seconds the caller will wait for a booking (0: no booking).
-- ARGV[4]   horizon: seconds after the last admission (or booked start) when
--           the state is empty again.
-- ARGV[5]   keep: milliseconds added to the keys' TTL beyond the horizon.
-- ARGV[6]   n: the number of limits, then six values per limit (see limits.lua).
-- Returns   {admitted (1 or 0), wait (seconds, string: how long a booked call
--           waits, or when a refused call would fit), remaining (units),
--           capacity (units), reset_after (seconds, string), now (seconds, string)}.
--
-- One limit is decided by check(take) and, if it must wait, commit: the
-- in-memory store's fast path. Several are checked first and committed at
-- the latest time any of them needs, or not at all.

local now = tonumber(ARGV[1]) or server_now()
local cost = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local limits = read_limits(7, n)

local raw = redis.call('HMGET', KEYS[1], unpack(state_fields(limits)))
local expires = tonumber(raw[1])
local new = expires == nil or now >= expires
if new then -- forget an expired state (and any log left without one)
  if expires ~= nil then
    redis.call('DEL', unpack(KEYS))
  elseif #KEYS > 1 then
    redis.call('DEL', unpack(KEYS, 2))
  end
end

local states = {}
for i = 1, n do
  if not new then
    states[i] = limits[i].alg.load(limits[i], raw[i + 1])
  end
end

local admitted = true
local wait = 0
if n == 1 then
  local l = limits[1]
  local at, state = l.alg.check(l, states[1], now, cost, true)
  states[1] = state
  if at > now then
    wait = wait_until(now, at)
    local booked = nil
    if wait <= max_wait then
      booked = l.alg.commit(l, state, at, cost)
    end
    if booked == nil then
      admitted = false
    else
      states[1] = booked
    end
  end
else
  local at = now
  for i = 1, n do
    local l = limits[i]
    local when, kept = l.alg.check(l, states[i], now, cost, false)
    states[i] = kept
    if when > at then
      at = when
    end
  end
  if at > now and at - now > max_wait then
    admitted = false
  else
    local committed = {}
    for i = 1, n do
      local l = limits[i]
      committed[i] = l.alg.commit(l, states[i], at, cost)
      if committed[i] == nil then
        admitted = false
        break
      end
    end
    if admitted then
      states = committed
    end
  end
  if at > now then
    wait = wait_until(now, at)
  end
end

local expiry = expires
if admitted then
  expiry = now + wait + horizon
elseif new then
  expiry = now + horizon
end
local ttl = math.ceil((expiry - now) * 1000) + keep
local set = {'x', fmt(expiry)}
local gone = {}
for i = 1, n do
  local l = limits[i]
  local value = l.alg.save(l, states[i], ttl)
  if value == nil then
    gone[#gone + 1] = l.field
  else
    set[#set + 1] = l.field
    set[#set + 1] = value
  end
end
redis.call('HSET', KEYS[1], unpack(set))
if #gone > 0 and not new then -- a new state has no old fields
  redis.call('HDEL', KEYS[1], unpack(gone))
end
redis.call('PEXPIRE', KEYS[1], ttl)

local remaining, capacity, reset_after = nil, nil, nil
for i = 1, n do
  local l = limits[i]
  local left, reset = l.alg.status(l, states[i], now)
  if remaining == nil or left < remaining then
    remaining, capacity, reset_after = left, l.capacity, reset
  end
end
local admitted_flag = 0
if admitted then
  admitted_flag = 1
end
return {admitted_flag, fmt(wait), remaining, capacity, fmt(reset_after), fmt(now)}
