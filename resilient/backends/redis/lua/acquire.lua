-- acquire.lua: take `cost` units from every limit of one key, or from none.
--
-- KEYS[1]   string: the key's state under one set of limits (see limits.lua).
-- KEYS[2..] sorted sets: the logs of its sliding-log limits, in limit order.
-- ARGV[1]   doubles packed '<ddd': now (seconds on the caller's clock; NaN: the
--           server's TIME), cost (units, 1 <= cost <= every capacity), and
--           max_wait (seconds the caller will wait for a booking; 0: none).
-- ARGV[2-3] the limits (see limits.lua).
-- Returns   six doubles packed '<dddddd' (one bulk string: the cheapest reply to
--           send and to read): admitted (1 or 0), remaining (units), capacity
--           (units), wait (seconds: how long a booked call waits, or when a
--           refused call would fit; 0 when admitted now), reset_after (seconds),
--           and now (seconds: the time decided on).
--
-- One limit is decided by check(take) and, if it must wait, commit: the
-- in-memory store's fast path. Several are checked first and committed at
-- the latest time any of them needs, or not at all. A refusal that changed
-- nothing writes nothing.

local now, cost, max_wait = struct.unpack('<ddd', ARGV[1])
if now ~= now then
  now = server_now()
end
local limits, horizon, keep, layout = read_limits()
local n = #limits

local expires, states = load_states(limits, layout)
local new = expires == nil or now >= expires
if new then
  states = {}
  if expires ~= nil then -- forget an expired state and its logs
    redis.call('DEL', unpack(KEYS))
  elseif #KEYS > 1 then -- logs left without a state
    redis.call('DEL', unpack(KEYS, 2))
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

local pruned = false
for i = 1, n do
  if type(states[i]) == 'table' and states[i].pruned then
    pruned = true
  end
end
if admitted or new or pruned then
  local expiry = expires
  if admitted then
    expiry = now + wait + horizon
  elseif new then
    expiry = now + horizon
  end
  local ttl = math.ceil((expiry - now) * 1000) + keep
  redis.call('SET', KEYS[1], pack_states(limits, layout, expiry, states, ttl), 'PX', ttl)
end

local remaining, capacity, reset_after = nil, nil, nil
for i = 1, n do
  local l = limits[i]
  local left, reset = l.alg.status(l, states[i], now)
  if remaining == nil or left < remaining then
    remaining, capacity, reset_after = left, l.capacity, reset
  end
end
local flag = 0
if admitted then
  flag = 1
end
return struct.pack('<dddddd', flag, remaining, capacity, wait, reset_after, now)
