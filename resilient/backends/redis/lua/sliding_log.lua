-- sliding_log.lua: the exact sliding window (a sorted set, plus three doubles in the state key).
--
-- State: the log of admitted units in the limit's sorted set (l.key), one
-- member per instant: the doubles {stamp, units} packed '<dd', scored by stamp
-- (written with %.17g, so the score is the stamp exactly). Members after `now`
-- are bookings of waiting callers. The state key holds `used` (the log's
-- total; NaN or 0: empty) and the newest entry's stamp and units, so that
-- neither a booking's place in line nor merging a call into the same instant
-- needs another read. In Lua the state is {used, last, last_units, add_at,
-- add_units (a commit not written yet), pruned}, or nil when the log is empty.
-- The log is read oldest first in growing chunks, so a call touches only the
-- entries that leave the window and, when it is full, the ones it must outlast.

local SLIDING_LOG = {width = 3}
ALGORITHMS.sl = SLIDING_LOG

local function log_member(stamp, units)
  return struct.pack('<dd', stamp, units)
end

function SLIDING_LOG.load(l, values, i)
  local used = values[i]
  if used ~= used or used <= 0 then
    return nil
  end
  return {used = used, last = values[i + 1], last_units = values[i + 2]}
end

function SLIDING_LOG.save(l, s, out, ttl)
  if s == nil or s.used <= 0 then
    out[#out + 1] = NAN
    out[#out + 1] = NAN
    out[#out + 1] = NAN
    return
  end
  local last, last_units = s.last, s.last_units
  if s.add_at ~= nil then
    if last == s.add_at then
      redis.call('ZREM', l.key, log_member(last, last_units))
      last_units = last_units + s.add_units
    else
      last, last_units = s.add_at, s.add_units
    end
    redis.call('ZADD', l.key, string.format('%.17g', last), log_member(last, last_units))
  end
  if ttl ~= nil then
    redis.call('PEXPIRE', l.key, ttl)
  end
  out[#out + 1] = s.used
  out[#out + 1] = last
  out[#out + 1] = last_units
end

function SLIDING_LOG.commit(l, s, at, cost)
  local made = {used = cost, add_at = at, add_units = cost}
  if s ~= nil then
    made.used = s.used + cost
    made.last, made.last_units = s.last, s.last_units
    made.pruned = s.pruned
  end
  return made
end

function SLIDING_LOG.check(l, s, now, cost, take)
  if s == nil then
    if take then
      return now, SLIDING_LOG.commit(l, nil, now, cost)
    end
    return now, nil
  end
  local period = l.period
  local at = now
  local need = nil
  local pruning = true
  local scanning = true
  local removed = 0
  local freed = 0
  local offset = 0
  local chunk = 4
  while scanning do
    local members = redis.call('ZRANGE', l.key, offset, offset + chunk - 1)
    for i = 1, #members do
      local stamp, units = struct.unpack('<dd', members[i])
      if pruning then
        if now >= stamp + period then
          s.used = s.used - units
          removed = removed + 1
        else
          pruning = false
          need = s.used + cost - l.amount
          if need <= 0 then
            scanning = false
            break
          end
        end
      end
      if not pruning then
        freed = freed + units
        if freed >= need then
          at = stamp + period
          scanning = false
          break
        end
      end
    end
    if #members < chunk then
      break
    end
    offset = offset + chunk
    if chunk < 256 then
      chunk = chunk * 4
    end
  end
  if removed > 0 then
    redis.call('ZREMRANGEBYRANK', l.key, 0, removed - 1)
    s.pruned = true
  end
  if pruning then -- nothing left in the window
    s.used = 0
    s.last, s.last_units = nil, nil
    if take then
      return now, SLIDING_LOG.commit(l, s, now, cost)
    end
    return now, s
  end
  if s.last > at then -- first in, first out: never before the newest booking
    return s.last, s
  end
  if at > now then
    return at, s
  end
  if take then
    return now, SLIDING_LOG.commit(l, s, now, cost)
  end
  return now, s
end

function SLIDING_LOG.status(l, s, now)
  if s == nil or s.used <= 0 then
    return l.amount, 0
  end
  local left = l.amount - s.used
  if left < 0 then
    left = 0
  end
  local newest = s.add_at or s.last
  return left, newest + l.period - now
end

-- Give back `cost` units from the earliest booking (after now) that holds them.
function SLIDING_LOG.release(l, s, now, at, cost)
  if s == nil then
    return nil
  end
  local members = redis.call('ZRANGEBYSCORE', l.key, '(' .. string.format('%.17g', now), '+inf')
  for i = 1, #members do
    local stamp, units = struct.unpack('<dd', members[i])
    if units >= cost then
      redis.call('ZREM', l.key, members[i])
      if units > cost then
        local score = string.format('%.17g', stamp)
        redis.call('ZADD', l.key, score, log_member(stamp, units - cost))
      end
      s.used = s.used - cost
      if stamp == s.last then -- the newest entry: it shrank or went
        if units > cost then
          s.last_units = units - cost
        else
          local newest = redis.call('ZRANGE', l.key, -1, -1)[1]
          if newest then
            s.last, s.last_units = struct.unpack('<dd', newest)
          end
        end
      end
      break
    end
  end
  return s
end
