-- breaker.lua: one step of a circuit breaker shared through Redis.
--
-- The whole breaker lives in one hash (KEYS[1]). Every step reads it, applies
-- the in-memory breaker's rules (resilient/_circuit_breaker.py, _BreakerCore,
-- and the windows of resilient/_windows.py, operation for operation), writes
-- back what changed and answers, atomically. Every state change takes a new
-- generation from `seq`; outcomes carry the generation that admitted them and
-- probe verdicts their permit, and both are ignored once that generation is
-- gone. So replicas racing to change the state cannot overwrite each other:
-- the first step to arrive decides, and the others are answered with its result.
--
-- Hash fields:
--   state                   closed | open | half_open | forced_open | disabled
--   seq                     source of generations and probe permit numbers
--   gen                     the generation (seq at the last state change)
--   since, why              time and reason of the last state change
--   until                   end of the current OPEN period
--   opens                   opens in a row since the last close
--   streak                  failures in a row (CLOSED)
--   calls, fails, slow      the window's running totals
--   shape                   the window's shape: c<size> or t<width>x<buckets>;
--                           a replica with another shape starts it afresh
--   ring, pos               count window: one byte of flags per call (a ring), next slot
--   head, c<i>, f<i>, s<i>  time window: newest bucket number; calls, failures
--                           and slow calls of bucket slot i (bucket n is slot n % buckets)
--   probes                  HALF_OPEN permits in flight: "id=deadline id=deadline ..."
--   verdicts, pfail, pslow  HALF_OPEN probe verdicts so far
--
-- KEYS[1]   the breaker's hash.
-- ARGV[1]   the step, space-separated words ('-': none):
--             op        admit | flush | read | report | release | set
--                         admit    merge the outcomes, apply time-driven changes, admit
--                                  a call (ticket: the generation while CLOSED/DISABLED,
--                                  a permit in HALF_OPEN, -1 refused)
--                         flush    merge the outcomes (no time-driven change, no admission)
--                         read     merge the outcomes and apply time-driven changes
--                         report   a probe's verdict; release: a probe gives its permit back
--                         set      move to a state by hand (reset, force_open, disable)
--             now       seconds on the caller's clock; '-': the server's TIME
--             gen       the generation that admitted the outcomes
--             streak    failures at the end of the outcomes (all of them if none succeeded)
--             clean     1 if the outcomes hold a call that did not fail (the streak restarts)
--             hint      seconds the last failure asked the breaker to stay open
--             target    report/release: the permit; set: the new state
--             flags     report: the probe's outcome (1 failed, 2 slow)
-- ARGV[2]   the settings, 13 little-endian doubles: window kind (0 count, 1 time),
--           size (count: calls; time: buckets), bucket width (s), minimum calls,
--           failure rate, slow-call rate, consecutive failures (0: off),
--           half-open calls, open_for (s), open_for multiplier, max_open_for
--           (s, inf: none), half_open_max_wait (s), idle TTL (ms).
-- ARGV[3]   the outcomes, oldest first. Count window: one byte per call (flags:
--           1 failed, 2 slow). Time window: "age calls failures slow" groups
--           separated by ';', age in buckets before now's bucket.
-- ARGV[4]   set: the reason.
-- Returns   one string of lines (one bulk reply, cheap to read on both sides):
--             state gen ticket now until since calls fails slow streak inflight
--               first_state first_since   (times as '%.17g')
--             why                          the reason of the last change
--             first_why                    the reason of the state found (first_state)
--           then, for each change this step made, 'old new' and its reason.

local key = KEYS[1]
local step = {}
for word in string.gmatch(ARGV[1], '%S+') do
  if word == '-' then
    step[#step + 1] = false
  else
    step[#step + 1] = word
  end
end
local op, now, batch_gen, batch_streak, batch_clean, batch_hint, target, probe_flags =
  step[1], tonumber(step[2]), tonumber(step[3]), tonumber(step[4]), step[5] == '1',
  tonumber(step[6]), step[7], tonumber(step[8])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local kind, size, width, min_calls, failure_rate, slow_rate, max_streak, probe_calls,
  open_for, multiplier, max_open_for, max_wait, idle_ms =
  struct.unpack('<ddddddddddddd', ARGV[2])

local FAILURE, SLOW = 1, 2

local FIELDS = {
  'state', 'seq', 'gen', 'since', 'why', 'until', 'opens', 'streak', 'calls', 'fails',
  'slow', 'shape', 'pos', 'head', 'probes', 'verdicts', 'pfail', 'pslow',
}
local raw = redis.call('HMGET', key, unpack(FIELDS))
local stored = {}
for i, name in ipairs(FIELDS) do
  stored[name] = raw[i]
end

local function num(value, default)
  return tonumber(value) or default
end

local fresh = not stored.state
local state = stored.state or 'closed'
local seq = num(stored.seq, 0)
local gen = num(stored.gen, 0)
local since = num(stored.since, now)
local why = stored.why or ''
local open_until = num(stored['until'], 0)
local opens = num(stored.opens, 0)
local streak = num(stored.streak, 0)
local calls = num(stored.calls, 0)
local fails = num(stored.fails, 0)
local slow = num(stored.slow, 0)
local pos = num(stored.pos, 0)
local head = tonumber(stored.head)
local verdicts = num(stored.verdicts, 0)
local pfail = num(stored.pfail, 0)
local pslow = num(stored.pslow, 0)
local probes, inflight = {}, 0
for id, deadline in string.gmatch(stored.probes or '', '(%d+)=(%S+)') do
  probes[tonumber(id)] = tonumber(deadline)
  inflight = inflight + 1
end

local first_state, first_why, first_since = state, why, since
local dirty = fresh
local ring, ring_dirty = nil, false
local changes = {}

local shape
if kind == 0 then
  shape = string.format('c%d', size)
else
  shape = string.format('t%.17gx%d', width, size)
end

-- Redis commands take at most a few thousand arguments through unpack().
local function chunked(command, names)
  local out = {}
  for i = 1, #names, 1000 do
    local part = redis.call(command, key, unpack(names, i, math.min(i + 999, #names)))
    if type(part) == 'table' then
      for _, value in ipairs(part) do
        out[#out + 1] = value
      end
    end
  end
  return out
end

-- -- the windows (CountTally and TimeTally) ------------------------------------

local function flag_counts(s)
  local _, failed = string.gsub(s, '[\1\3]', '')
  local _, slowed = string.gsub(s, '[\2\3]', '')
  return failed, slowed
end

local function load_ring()
  if ring == nil then
    ring = redis.call('HGET', key, 'ring')
    if not ring or #ring ~= size then
      ring = string.rep('\0', size)
    end
  end
end

local function slot_names(first, last)
  local names = {}
  for n = first, last do
    local i = n % size
    names[#names + 1] = 'c' .. i
    names[#names + 1] = 'f' .. i
    names[#names + 1] = 's' .. i
  end
  return names
end

local function clear_window()
  if kind == 0 then
    if calls > 0 or pos > 0 then
      ring = string.rep('\0', size)
      ring_dirty = true
    end
    pos = 0
  elseif calls > 0 then
    chunked('HDEL', slot_names(0, size - 1))
  end
  head = nil
  calls, fails, slow = 0, 0, 0
end

-- TimeTally._advance: forget the buckets older than the window ending at `index`.
local function advance(index)
  if head == nil or index - head >= size then
    if calls > 0 then
      chunked('HDEL', slot_names(0, size - 1))
    end
    calls, fails, slow = 0, 0, 0
    head = index
    dirty = true
  elseif index > head then
    local names = slot_names(head + 1, index)
    local values = chunked('HMGET', names)
    local gone = {}
    for j = 1, #names, 3 do
      local c = tonumber(values[j])
      if c then
        calls = calls - c
        fails = fails - num(values[j + 1], 0)
        slow = slow - num(values[j + 2], 0)
        gone[#gone + 1] = names[j]
        gone[#gone + 1] = names[j + 1]
        gone[#gone + 1] = names[j + 2]
      end
    end
    if #gone > 0 then
      chunked('HDEL', gone)
    end
    head = index
    dirty = true
  end
end

-- CountTally.record, for a run of outcomes at once (bytes of flags, oldest first).
local function add_to_ring(batch)
  local k = #batch
  load_ring()
  if k >= size then
    ring = string.sub(batch, k - size + 1)
    pos = 0
    calls = size
    fails, slow = flag_counts(ring)
  else
    local old
    if pos + k <= size then
      old = string.sub(ring, pos + 1, pos + k)
      ring = string.sub(ring, 1, pos) .. batch .. string.sub(ring, pos + k + 1)
    else
      local tail = size - pos
      old = string.sub(ring, pos + 1) .. string.sub(ring, 1, k - tail)
      ring = string.sub(batch, tail + 1) .. string.sub(ring, k - tail + 1, pos)
        .. string.sub(batch, 1, tail)
    end
    local old_failed, old_slow = flag_counts(old)
    local new_failed, new_slow = flag_counts(batch)
    fails = fails - old_failed + new_failed
    slow = slow - old_slow + new_slow
    calls = math.min(size, calls + k)
    pos = (pos + k) % size
  end
  ring_dirty = true
end

-- TimeTally.record, for counts of outcomes that ended in the bucket `index`.
local function add_to_bucket(index, c, f, s)
  if index <= head - size then
    return -- older than the window: already expired
  end
  local i = index % size
  redis.call('HINCRBY', key, 'c' .. i, c)
  if f > 0 then
    redis.call('HINCRBY', key, 'f' .. i, f)
  end
  if s > 0 then
    redis.call('HINCRBY', key, 's' .. i, s)
  end
  calls = calls + c
  fails = fails + f
  slow = slow + s
end

local function current_bucket()
  return math.floor(now / width)
end

-- -- the state machine (_BreakerCore) -----------------------------------------

local function move(new, reason)
  local old = state
  seq = seq + 1
  gen = seq
  state = new
  since = now
  why = reason
  probes, inflight = {}, 0
  verdicts, pfail, pslow = 0, 0, 0
  if new == 'closed' then
    clear_window()
    streak = 0
    opens = 0
  end
  dirty = true
  if old ~= new then
    changes[#changes + 1] = old
    changes[#changes + 1] = new
    changes[#changes + 1] = reason
  end
end

-- CircuitBreakerConfig.open_duration
local function open_duration(n)
  local duration = open_for
  if multiplier > 1 and n > 1 then
    duration = duration * multiplier ^ (n - 1)
  end
  if max_open_for < math.huge then
    duration = math.min(duration, max_open_for)
  end
  return duration
end

local function open(reason, duration)
  opens = opens + 1
  if duration == nil then
    duration = open_duration(opens)
  end
  open_until = now + duration
  move('open', reason)
end

-- CircuitBreakerConfig.trip_reason
local function trip_reason()
  if max_streak > 0 and streak >= max_streak then
    return string.format('%d consecutive failures', streak)
  end
  if calls < min_calls then
    return nil
  end
  if fails / calls >= failure_rate then
    return string.format('failure rate %d/%d reached %.0f%%', fails, calls, failure_rate * 100)
  end
  if slow / calls >= slow_rate then
    return string.format('slow-call rate %d/%d reached %.0f%%', slow, calls, slow_rate * 100)
  end
  return nil
end

-- CircuitBreakerConfig.probe_verdict, then the move it calls for.
local function decide(reason)
  local n = probe_calls
  if pfail / n >= failure_rate or pslow / n >= slow_rate then
    if reason == '' then
      reason = string.format('probes failed (%d failed, %d slow of %d)', pfail, pslow, n)
    end
    open(reason)
    return
  end
  local left = n - verdicts
  if (pfail + left) / n < failure_rate and (pslow + left) / n < slow_rate then
    move('closed', string.format('probes succeeded (%d reported)', verdicts))
  end
end

local function expire_probes()
  local expired = 0
  for id, deadline in pairs(probes) do
    if now >= deadline then
      probes[id] = nil
      expired = expired + 1
    end
  end
  if expired == 0 then
    return
  end
  inflight = inflight - expired
  verdicts = verdicts + expired
  pfail = pfail + expired
  pslow = pslow + expired
  dirty = true
  decide(string.format('%d probe(s) silent for half_open_max_wait', expired))
end

local function refresh()
  if state == 'open' and now >= open_until then
    move('half_open', 'open_for elapsed')
  elseif state == 'half_open' and inflight > 0 then
    expire_probes()
  end
end

-- The outcomes of CLOSED calls, counted if their generation is still the current one.
local function merge()
  local batch = ARGV[3]
  if batch == '' or batch_gen ~= gen or state ~= 'closed' then
    return
  end
  if kind == 0 then
    add_to_ring(batch)
  else
    local index = current_bucket()
    advance(index)
    for age, c, f, s in string.gmatch(batch, '(%d+) (%d+) (%d+) (%d+)') do
      add_to_bucket(index - tonumber(age), tonumber(c), tonumber(f), tonumber(s))
    end
  end
  if batch_clean then
    streak = batch_streak
  else
    streak = streak + batch_streak
  end
  dirty = true
  if batch_hint ~= nil then
    open(string.format('the outcome asked for %gs', batch_hint), batch_hint)
    return
  end
  local reason = trip_reason()
  if reason ~= nil then
    open(reason)
  end
end

-- -- the step ---------------------------------------------------------------

if not fresh and stored.shape ~= shape then
  -- Another window shape: its data cannot be read with this one.
  local names = {}
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.match(name, '^[cfs]%d+$') or name == 'ring' then
      names[#names + 1] = name
    end
  end
  if #names > 0 then
    chunked('HDEL', names)
  end
  ring = nil
  head = nil
  pos = 0
  calls, fails, slow = 0, 0, 0
  dirty = true
end

local ticket = 0
if op == 'admit' or op == 'flush' or op == 'read' then
  merge()
  if op ~= 'flush' then
    refresh()
  end
  if op == 'admit' then
    if state == 'closed' or state == 'disabled' then
      ticket = gen
    elseif state == 'half_open' and inflight + verdicts < probe_calls then
      seq = seq + 1
      ticket = seq
      probes[ticket] = now + max_wait
      inflight = inflight + 1
      dirty = true
    else
      ticket = -1
    end
  end
elseif op == 'report' then
  local id = tonumber(target)
  if state == 'half_open' and probes[id] ~= nil then
    probes[id] = nil
    inflight = inflight - 1
    verdicts = verdicts + 1
    dirty = true
    local flags = probe_flags
    if flags % 2 == FAILURE then
      pfail = pfail + 1
    end
    if flags % 2 == FAILURE and batch_hint ~= nil then
      open(string.format('a probe asked for %gs', batch_hint), batch_hint)
    else
      if flags >= SLOW then
        pslow = pslow + 1
      end
      expire_probes()
      if state == 'half_open' then
        decide('')
      end
    end
  end
elseif op == 'release' then
  local id = tonumber(target)
  if probes[id] ~= nil then
    probes[id] = nil
    inflight = inflight - 1
    dirty = true
  end
elseif op == 'set' then
  move(target, ARGV[4])
else
  return redis.error_reply('ERR breaker.lua: unknown op ' .. tostring(op))
end

if kind == 1 then
  advance(current_bucket()) -- the totals as of now, as TimeTally.totals(now) reads them
end

local function g(x)
  return string.format('%.17g', x)
end

if dirty then
  local listed = {}
  for id, deadline in pairs(probes) do
    listed[#listed + 1] = string.format('%d=%s', id, g(deadline))
  end
  redis.call('HSET', key,
    'state', state, 'seq', seq, 'gen', gen, 'since', g(since), 'why', why,
    'until', g(open_until), 'opens', opens, 'streak', streak, 'calls', calls,
    'fails', fails, 'slow', slow, 'shape', shape, 'pos', pos,
    'probes', table.concat(listed, ' '), 'verdicts', verdicts, 'pfail', pfail,
    'pslow', pslow)
  if head ~= nil then
    redis.call('HSET', key, 'head', head)
  else
    redis.call('HDEL', key, 'head')
  end
  if ring_dirty then
    redis.call('HSET', key, 'ring', ring)
  end
  if state == 'forced_open' or state == 'disabled' then
    redis.call('PERSIST', key) -- a state set by hand never fades away
  else
    local ms = idle_ms
    if state == 'open' then
      ms = ms + (open_until - now) * 1000
    elseif state == 'half_open' then
      ms = ms + max_wait * 1000
    end
    if ms < 9e15 then
      redis.call('PEXPIRE', key, math.ceil(ms))
    else
      redis.call('PERSIST', key)
    end
  end
end

local lines = {
  table.concat({
    state, string.format('%d', gen), string.format('%d', ticket), g(now), g(open_until),
    g(since), calls, fails, slow, streak, inflight, first_state, g(first_since),
  }, ' '),
  why,
  first_why,
}
for i = 1, #changes, 3 do
  lines[#lines + 1] = changes[i] .. ' ' .. changes[i + 1]
  lines[#lines + 1] = changes[i + 2]
end
return table.concat(lines, '\n')
