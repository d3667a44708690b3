-- common.lua: definitions shared by every rate-limit script.
--
-- A script is assembled from common.lua, the four algorithm files and one entry
-- file (acquire.lua or release.lua), in that order. Each file is a chunk of
-- `local` definitions, so the assembled text is one function that Redis caches
-- under one SHA1; the entry file's header gives the script's KEYS and ARGV.
--
-- Units: time is in seconds, a double: the server's TIME (seconds plus
-- microseconds), or the caller's clock when ARGV gives it. Counts are whole
-- units. A number whose fraction matters leaves Lua as a string written with
-- %.17g, which reads back to the very same double (Redis would truncate a Lua
-- number reply to an integer). Every expression copies, operation for
-- operation, its twin in resilient/_algorithms.py, so the same state, time
-- and cost give the same double-precision result on both sides.
--
-- Each algorithm file defines a table of six functions over a limit `l`
-- (fields: amount, period, capacity, initial or nil, interval, tolerance,
-- field, and key for a sliding log) and its state (nil when empty):
--   load(l, raw) -> state        raw: the hash field's value, or false
--   save(l, state, ttl_ms) -> raw or nil (nil: delete the field)
--   check(l, state, now, cost, take) -> at, state
--   commit(l, state, at, cost) -> state, or nil when it cannot book that far
--   status(l, state, now) -> remaining, reset_after
--   release(l, state, now, at, cost) -> state

local SLACK = 1e-9

local function fmt(x)
  return string.format('%.17g', x)
end

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
