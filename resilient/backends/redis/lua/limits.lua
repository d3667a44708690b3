-- limits.lua: the limits of one call, read from ARGV (after the algorithm files).
--
-- ARGV[base..] six values per limit: algorithm (tb: token bucket, sl: sliding
-- log, sc: sliding counter, fw: fixed window), amount (units per period),
-- period (seconds), capacity (units: the most one call may take), initial
-- (units in a new token bucket, or '' for a full one), and the index in KEYS of
-- the limit's log (sliding log only; '0' for the others).
-- interval (seconds per unit) and tolerance (seconds of credit of a full
-- bucket) are computed here with the same two operations as Limit in Python.

local ALGORITHMS = {tb = TOKEN_BUCKET, sl = SLIDING_LOG, sc = SLIDING_COUNTER, fw = FIXED_WINDOW}

local function read_limits(base, n)
  local limits = {}
  for i = 1, n do
    local j = base + (i - 1) * 6
    local amount = tonumber(ARGV[j + 1])
    local period = tonumber(ARGV[j + 2])
    local capacity = tonumber(ARGV[j + 3])
    local interval = period / amount
    local l = {
      alg = ALGORITHMS[ARGV[j]],
      amount = amount,
      period = period,
      capacity = capacity,
      interval = interval,
      tolerance = capacity * interval,
      field = tostring(i),
    }
    if ARGV[j + 4] ~= '' then
      l.initial = tonumber(ARGV[j + 4])
    end
    if ARGV[j + 5] ~= '0' then
      l.key = KEYS[tonumber(ARGV[j + 5])]
    end
    limits[i] = l
  end
  return limits
end

-- The state field names of the limits, after the expiry field 'x'.
local function state_fields(limits)
  local fields = {'x'}
  for i = 1, #limits do
    fields[i + 1] = limits[i].field
  end
  return fields
end
