-- release.lua: give back a booking whose caller stopped waiting early.
--
-- KEYS      as for acquire.lua.
-- ARGV[1]   doubles packed '<ddd': now (seconds on the caller's clock; NaN: the
--           server's TIME), cost (the units booked), and wait_left (seconds the
--           caller still had to wait: the booking was for now + wait_left).
-- ARGV[2-3] the limits (see limits.lua).
-- Returns   1 if the key had state to give back to, else 0.
-- The keys keep their TTLs.

local now, cost, wait_left = struct.unpack('<ddd', ARGV[1])
if now ~= now then
  now = server_now()
end
local at = now + wait_left
local limits, horizon, keep, layout = read_limits()

local expires, states = load_states(limits, layout)
if expires == nil or now >= expires then
  return 0
end
for i = 1, #limits do
  local l = limits[i]
  states[i] = l.alg.release(l, states[i], now, at, cost)
end
redis.call('SET', KEYS[1], pack_states(limits, layout, expires, states, nil), 'KEEPTTL')
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for k = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
return 1
