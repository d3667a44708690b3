-- limits.lua: the limits of one call and the layout of the state key.
--
-- ARGV[2]  the algorithm of each limit, two letters each (tb: token bucket,
--          sl: sliding log, sc: sliding counter, fw: fixed window).
-- ARGV[3]  doubles packed '<d...': horizon (seconds after the last admission or
--          booked start when the state is empty again), keep (milliseconds of
--          TTL beyond it), then five per limit: amount (units per period),
--          period (seconds), capacity (units: the most one call may take),
--          initial (units in a new token bucket; NaN: a full one), and the
--          index in KEYS of its log (sliding log; 0 for the others).
-- interval (seconds per unit), tolerance (seconds of credit of a full bucket)
-- and slack (seconds) are computed with the same operations as Limit in Python.
-- The state key (KEYS[1]) holds doubles packed '<d...': the expiry (seconds on
-- the clock of `now`: the state is forgotten from then on), then each limit's
-- state (its algorithm's width).

local function read_limits()
  local codes = ARGV[2]
  local n = #codes / 2
  local v = {struct.unpack('<' .. string.rep('d', 2 + 5 * n), ARGV[3])}
  local limits = {}
  local width = 1
  for i = 1, n do
    local j = 2 + (i - 1) * 5
    local amount, period, capacity = v[j + 1], v[j + 2], v[j + 3]
    local interval = period / amount
    local l = {
      alg = ALGORITHMS[string.sub(codes, 2 * i - 1, 2 * i)],
      amount = amount,
      period = period,
      capacity = capacity,
      interval = interval,
      tolerance = capacity * interval,
      slack = math.min(1e-6, interval / 1000),
    }
    if v[j + 4] == v[j + 4] then
      l.initial = v[j + 4]
    end
    if v[j + 5] ~= 0 then
      l.key = KEYS[v[j + 5]]
    end
    width = width + l.alg.width
    limits[i] = l
  end
  return limits, v[1], v[2], '<' .. string.rep('d', width)
end

-- The expiry and the states in the state key (nil, nil if there is none).
local function load_states(limits, layout)
  local raw = redis.call('GET', KEYS[1])
  if not raw then
    return nil, nil
  end
  local values = {struct.unpack(layout, raw)}
  local states = {}
  local i = 2
  for k = 1, #limits do
    local l = limits[k]
    states[k] = l.alg.load(l, values, i)
    i = i + l.alg.width
  end
  return values[1], states
end

-- The state key's value for this expiry and these states (logs are written too).
local function pack_states(limits, layout, expiry, states, ttl)
  local out = {expiry}
  for k = 1, #limits do
    local l = limits[k]
    l.alg.save(l, states[k], out, ttl)
  end
  return struct.pack(layout, unpack(out))
end
