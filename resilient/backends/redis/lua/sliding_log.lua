-- sliding_log.lua: the exact sliding window (a sorted set, plus a hash field).
--
-- State: the log of admitted units, in KEYS[l.key], a sorted set whose
-- members are "<stamp> <units>" scored by stamp (seconds, %.17g); one member
-- per instant (units at the same instant are merged), and members after `now`
-- are bookings of waiting callers. The hash field of the limit
-- (KEYS[1][field]) holds `used`, the total units of the log. In Lua the state
-- is {used, last (the newest stamp), last_member, last_units, add_at,
-- add_units (a commit not yet written)}, or nil when the log is empty.
-- The log is read oldest first in growing chunks, so a call touches only the
-- entries that leave the window and, when it is full, the ones it must outlast.

local SLIDING_LOG = {}

local function log_entry(member)
  local stamp, units = string.match(member, '^(%S+) (%d+)$')
  return tonumber(stamp), tonumber(units)
end

local function log_member(stamp, units)
  return fmt(stamp) .. ' ' .. units
end

function SLIDING_LOG.load(l, raw)
  if raw then
    return {used = tonumber(raw)}
  end
  return nil
end

function SLIDING_LOG.save(l, s, ttl)
  if s == nil then
    return nil
  end
  if s.add_at ~= nil then
    local units = s.add_units
    if s.last ~= nil and s.last == s.add_at then
      redis.call('ZREM', l.key, s.last_member)
      units = units + s.last_units
    end
    redis.call('ZADD', l.key, fmt(s.add_at), log_member(s.add_at, units))
  end
  if s.used <= 0 then
    return nil
  end
  if ttl ~= nil then
    redis.call('PEXPIRE', l.key, ttl)
  end
  return fmt(s.used)
end

function SLIDING_LOG.commit(l, s, at, cost)
  local made = {used = cost, add_at = at, add_units = cost}
  if s ~= nil then
    made.used = s.used + cost
    made.last, made.last_member, made.last_units = s.last, s.last_member, s.last_units
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
      local stamp, units = log_entry(members[i])
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
  end
  if pruning then -- nothing left in the window
    s.used = 0
    s.last = nil
    if take then
      return now, SLIDING_LOG.commit(l, s, now, cost)
    end
    return now, s
  end
  local newest = redis.call('ZRANGE', l.key, -1, -1)[1]
  s.last, s.last_units = log_entry(newest)
  s.last_member = newest
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
  local members = redis.call('ZRANGEBYSCORE', l.key, '(' .. fmt(now), '+inf')
  for i = 1, #members do
    local stamp, units = log_entry(members[i])
    if units >= cost then
      redis.call('ZREM', l.key, members[i])
      if units > cost then
        redis.call('ZADD', l.key, fmt(stamp), log_member(stamp, units - cost))
      end
      s.used = s.used - cost
      break
    end
  end
  return s
end
