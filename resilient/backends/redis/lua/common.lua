-- common.lua: definitions shared by every rate-limit script.
--
-- A script is assembled from this file, the files of the algorithms it needs,
-- limits.lua and one entry file (acquire.lua or release.lua), in that order;
-- each is a chunk of `local` definitions, so the assembled text is one function
-- that Redis caches under one SHA1. The entry file's header gives KEYS and ARGV.
--
-- Units: time is in seconds, a double: the server's TIME (seconds plus
-- microseconds), or the caller's clock when ARGV gives it. Counts are whole
-- units. Every number whose fraction matters crosses the wire and is stored as
-- a little-endian IEEE-754 double (struct.pack '<d'): exact, and far cheaper
-- than text (a Lua number reply would be truncated to an integer). Every
-- expression copies, operation for operation, its twin in resilient/_algorithms.py,
-- so the same state, time and cost give the same double on both sides.
--
-- Each algorithm file adds to ALGORITHMS, under its two-letter code, a table:
--   width                      doubles its state takes in the state key
--   load(l, values, i) -> state   from values[i .. i + width - 1] (nil: empty)
--   save(l, state, out, ttl)      append width doubles to out (and write a log)
--   check(l, state, now, cost, take) -> at, state
--   commit(l, state, at, cost) -> state, or nil when it cannot book that far
--   status(l, state, now) -> remaining, reset_after
--   release(l, state, now, at, cost) -> state
-- over a limit `l` (amount, period, capacity, initial or nil, interval,
-- tolerance, and key: a sliding log's sorted set) and its state.

local ALGORITHMS = {}
local NAN = 0 / 0
local SLACK = 1e-9

-- The smallest double above x (x >= 0 and finite): its IEEE-754 bits plus one.
local function next_up(x)
  local lo, hi = struct.unpack('<I4I4', struct.pack('<d', x))
  lo = lo + 1
  if lo == 4294967296 then
    lo = 0
    hi = hi + 1
  end
  return (struct.unpack('<d', struct.pack('<I4I4', lo, hi)))
end

-- Seconds from now to at (> now), rounded up so that now + result >= at.
local function wait_until(now, at)
  local wait = at - now
  while now + wait < at do
    wait = next_up(wait)
  end
  return wait
end

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function whole(left)
  if left > 0 then
    return math.floor(left + SLACK)
  end
  return 0
end

-- A number, or NAN for nil (how an empty state is stored).
local function or_nan(x)
  if x == nil then
    return NAN
  end
  return x
end
