-- sliding_counter.lua: the approximate sliding window (two windows' counts in one key).
--
-- State: {start, prev, curr, ahead}: the current fixed window's start
-- (seconds), the previous window's count, the current window's count, and the
-- units booked into the next window; nil when empty. Four doubles in the state
-- key (start NaN: nil).
-- The calls of the last `period` seconds are estimated as
-- curr + prev * (the share of the previous window still inside the sliding one).

local SLIDING_COUNTER = {width = 4}
ALGORITHMS.sc = SLIDING_COUNTER

function SLIDING_COUNTER.load(l, values, i)
  if values[i] ~= values[i] then
    return nil
  end
  return {values[i], values[i + 1], values[i + 2], values[i + 3]}
end

function SLIDING_COUNTER.save(l, s, out, ttl)
  if s == nil then
    s = {NAN, 0, 0, 0}
  end
  for k = 1, 4 do
    out[#out + 1] = s[k]
  end
end

local function counter_roll(l, s, now)
  local start, prev, curr, ahead = s[1], s[2], s[3], s[4]
  while now >= start + l.period do
    start, prev, curr, ahead = start + l.period, curr, ahead, 0
    if prev == 0 and curr == 0 then
      return nil
    end
  end
  return {start, prev, curr, ahead}
end

-- Earliest time in the window starting at `start` where `cost` fits, or nil.
local function counter_fit(l, start, prev, curr, cost)
  local room = l.amount - curr - cost
  if room < 0 then
    return nil
  end
  if room >= prev then
    return start
  end
  return start + l.period - l.period * room / prev
end

function SLIDING_COUNTER.check(l, s, now, cost, take)
  if s ~= nil and now >= s[1] + l.period then
    s = counter_roll(l, s, now)
  end
  if s == nil then
    if take then
      return now, {now, 0, cost, 0}
    end
    return now, nil
  end
  local start, prev, curr, ahead = s[1], s[2], s[3], s[4]
  local following = start + l.period
  if ahead == 0 then
    local at = counter_fit(l, start, prev, curr, cost)
    if at ~= nil then
      if at > now then
        return at, s
      end
      if take then
        return now, {start, prev, curr + cost, 0}
      end
      return now, s
    end
  end
  local at = counter_fit(l, following, curr, ahead, cost)
  if at == nil then
    at = counter_fit(l, following + l.period, ahead, 0, cost)
  end
  if at > now then
    return at, s
  end
  return now, s
end

function SLIDING_COUNTER.commit(l, s, at, cost)
  if s == nil then
    return {at, 0, cost, 0}
  end
  local following = s[1] + l.period
  if at < following then
    return {s[1], s[2], s[3] + cost, s[4]}
  end
  if at < following + l.period then
    return {s[1], s[2], s[3], s[4] + cost}
  end
  return nil
end

function SLIDING_COUNTER.status(l, s, now)
  if s == nil then
    return l.amount, 0
  end
  local following = s[1] + l.period
  if s[4] ~= 0 then
    return 0, following + l.period + l.period - now
  end
  local weight = (following - now) / l.period
  local remaining = whole(l.amount - s[2] * weight - s[3])
  if s[3] ~= 0 then
    return remaining, following + l.period - now
  end
  if s[2] ~= 0 then
    return remaining, following - now
  end
  return remaining, 0
end

function SLIDING_COUNTER.release(l, s, now, at, cost)
  if s == nil then
    return nil
  end
  if at >= s[1] + l.period then
    if s[4] >= cost then
      return {s[1], s[2], s[3], s[4] - cost}
    end
    return s
  end
  if s[3] >= cost then
    return {s[1], s[2], s[3] - cost, s[4]}
  end
  return s
end
