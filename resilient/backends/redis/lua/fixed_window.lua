-- fixed_window.lua: back-to-back windows of `period` seconds.
--
-- State: {start, count, ahead}: the current window's start (seconds), the
-- units counted in it, and the units booked into the next window by waiting
-- callers; nil when empty. Three doubles in the state key (start NaN: nil).
-- Windows start with the first call that finds no state.

local FIXED_WINDOW = {width = 3}
ALGORITHMS.fw = FIXED_WINDOW

function FIXED_WINDOW.load(l, values, i)
  if values[i] ~= values[i] then
    return nil
  end
  return {values[i], values[i + 1], values[i + 2]}
end

function FIXED_WINDOW.save(l, s, out, ttl)
  if s == nil then
    s = {NAN, 0, 0}
  end
  out[#out + 1] = s[1]
  out[#out + 1] = s[2]
  out[#out + 1] = s[3]
end

function FIXED_WINDOW.check(l, s, now, cost, take)
  if s == nil then
    if take then
      return now, {now, cost, 0}
    end
    return now, nil
  end
  local start, count, ahead = s[1], s[2], s[3]
  local following = start + l.period
  if now >= following then
    if ahead == 0 or now >= following + l.period then
      if take then
        return now, {now, cost, 0}
      end
      return now, nil
    end
    start, count, ahead = following, ahead, 0
    s = {start, count, ahead}
    following = start + l.period
  end
  if ahead == 0 and count + cost <= l.amount then
    if take then
      return now, {start, count + cost, 0}
    end
    return now, s
  end
  if ahead + cost <= l.amount then
    return following, s
  end
  return following + l.period, s
end

function FIXED_WINDOW.commit(l, s, at, cost)
  if s == nil then
    return {at, cost, 0}
  end
  local following = s[1] + l.period
  if at < following then
    return {s[1], s[2] + cost, s[3]}
  end
  if at < following + l.period then
    return {s[1], s[2], s[3] + cost}
  end
  return nil
end

function FIXED_WINDOW.status(l, s, now)
  if s == nil then
    return l.amount, 0
  end
  local following = s[1] + l.period
  if s[3] ~= 0 then
    return 0, following + l.period - now
  end
  local left = l.amount - s[2]
  if left < 0 then
    left = 0
  end
  return left, following - now
end

function FIXED_WINDOW.release(l, s, now, at, cost)
  if s == nil then
    return nil
  end
  if at >= s[1] + l.period then
    if s[3] >= cost then
      return {s[1], s[2], s[3] - cost}
    end
    return s
  end
  if s[2] >= cost then
    return {s[1], s[2] - cost, s[3]}
  end
  return s
end
