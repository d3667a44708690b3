-- token_bucket.lua: GCRA, the token bucket's exact equivalent.
--
-- State: `tat`, the theoretical arrival time (seconds): when the bucket would
-- be full again; nil is a full bucket. One double in the state key (NaN: nil).
-- Limit values used: interval (seconds per token), tolerance (seconds of
-- credit in a full bucket), slack (a call due that soon is admitted now: the
-- rounding of a burst's additions must not refuse a full bucket's last token),
-- capacity and initial (tokens of a new bucket).
-- A call of `cost` fits when tat + cost * interval - tolerance <= now + slack.

local TOKEN_BUCKET = {width = 1}
ALGORITHMS.tb = TOKEN_BUCKET

function TOKEN_BUCKET.load(l, values, i)
  local tat = values[i]
  if tat ~= tat then
    return nil
  end
  return tat
end

function TOKEN_BUCKET.save(l, tat, out, ttl)
  out[#out + 1] = or_nan(tat)
end

function TOKEN_BUCKET.check(l, tat, now, cost, take)
  if tat ~= nil and tat > now then
    local at = tat + cost * l.interval - l.tolerance
    if at > now + l.slack then
      return at, tat
    end
    if take then
      return now, tat + cost * l.interval
    end
    return now, tat
  end
  if tat == nil and l.initial ~= nil then
    tat = now + (l.capacity - l.initial) * l.interval
    return TOKEN_BUCKET.check(l, tat, now, cost, take)
  end
  if take then
    return now, now + cost * l.interval
  end
  if l.initial == nil then
    return now, nil
  end
  return now, tat
end

function TOKEN_BUCKET.commit(l, tat, at, cost)
  local start = tat
  if tat == nil or tat < at then
    start = at
  end
  return start + cost * l.interval
end

function TOKEN_BUCKET.status(l, tat, now)
  if tat == nil or tat <= now then
    return l.capacity, 0
  end
  local ahead = tat - now
  return whole(l.capacity - ahead / l.interval), ahead
end

function TOKEN_BUCKET.release(l, tat, now, at, cost)
  if tat == nil then
    return nil
  end
  return tat - cost * l.interval
end
