-- Applies one user's events of a micro-batch, in order, each once. All keys share the user's hash tag {u:<user>}.
-- KEYS: 1 events, 2 items, 3 ids, 4 offsets, 5 affinity, 6 cart, 7 purchased, 8 session, 9 stats
-- ARGV: 1 max events, 2 affinity tau s, 3 partners k, 4 user ttl s (0 = none), 5 cart cap, then per event 10
--       values: event_id, event json, item_id ('' for search), type, ts (epoch s), category ('' unknown),
--       session_id ('' none), affinity weight, source ('topic:partition', '' = not from a topic), offset
-- Returns per event: status, partners joined by \31. Status 1 = applied now. 2 = redelivered: at or below its
-- source's watermark and applied from that very offset, returned with the partners it was applied with, so the
-- item side of a half-applied batch is replayed with the same arguments (its scripts keep watermarks of their
-- own). 0 = a duplicate: an event id among the user's last `max events` events arriving again (a producer
-- re-send), or a redelivered duplicate. No per-event keys: state grows with users, not with events.
local cap, tau, k, ttl, cart_cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
local SEP = '\31'

-- The ids window (entries "id \31 offset \31 partners...") and the item list, read once, kept current in here.
local known, items = {}, redis.call('LRANGE', KEYS[2], 0, -1)
for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local a = string.find(entry, SEP, 1, true)
  local b = string.find(entry, SEP, a + 1, true)
  local partners = b and string.sub(entry, b + 1) or ''
  known[string.sub(entry, 1, a - 1)] = {string.sub(entry, a + 1, (b or 0) - 1), partners}
end
local marks = {}
local function watermark(source)
  if marks[source] == nil then marks[source] = tonumber(redis.call('HGET', KEYS[4], source)) or false end
  return marks[source]
end

local function partners_of(item)
  -- The user's last k distinct items other than this one, newest first (before this event is pushed).
  local out, seen = {}, {}
  for _, other in ipairs(items) do
    if other ~= '' and other ~= item and not seen[other] then
      seen[other] = true
      out[#out + 1] = other
      if #out >= k then break end
    end
  end
  return table.concat(out, SEP)
end

local function add_affinity(category, weight, ts)
  -- Each category keeps "value:ref_ts": the affinity as of ref_ts. Decay uses event time only.
  local value, ref = 0.0, ts
  local prev = redis.call('HGET', KEYS[5], category)
  if prev then
    local sep = string.find(prev, ':', 1, true)
    value, ref = tonumber(string.sub(prev, 1, sep - 1)), tonumber(string.sub(prev, sep + 1))
  end
  if ts >= ref then
    value, ref = value * math.exp(-(ts - ref) / tau) + weight, ts
  else
    value = value + weight * math.exp(-(ref - ts) / tau)  -- a late event counts as of its own time
  end
  redis.call('HSET', KEYS[5], category, string.format('%.17g:%.17g', value, ref))
end

local function apply(a, event_id, item, etype, ts, offset)
  local joined = ''
  if item ~= '' and etype ~= 'remove_from_cart' then joined = partners_of(item) end
  redis.call('LPUSH', KEYS[1], ARGV[a + 1])
  redis.call('LTRIM', KEYS[1], 0, cap - 1)
  redis.call('LPUSH', KEYS[2], item)
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
  table.insert(items, 1, item)
  if #items > cap then items[#items] = nil end
  local category, weight = ARGV[a + 5], tonumber(ARGV[a + 7])
  if category ~= '' and weight ~= 0 then add_affinity(category, weight, ts) end
  if etype == 'add_to_cart' then
    redis.call('ZADD', KEYS[6], ts, item)
    redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -(cart_cap + 1))
  elseif etype == 'remove_from_cart' then
    redis.call('ZREM', KEYS[6], item)
  elseif etype == 'purchase' then
    redis.call('ZREM', KEYS[6], item)
    redis.call('ZADD', KEYS[7], ts, item)
    redis.call('ZREMRANGEBYRANK', KEYS[7], 0, -51)
  end
  local last = tonumber(redis.call('HGET', KEYS[8], 'last_ts') or '-1e300')
  if ts >= last then
    redis.call('HSET', KEYS[8], 'last_ts', string.format('%.17g', ts))
    if ARGV[a + 6] ~= '' then redis.call('HSET', KEYS[8], 'session_id', ARGV[a + 6]) end
  end
  redis.call('HINCRBY', KEYS[9], 'applied', 1)
  redis.call('HINCRBY', KEYS[9], 'type:' .. etype, 1)
  -- The marks (ids window, watermark) are written last: Lua does not roll back, so a command failing above
  -- (say WRONGTYPE on a key another program wrote) must not leave the event marked applied.
  local entry = event_id .. SEP .. offset
  if joined ~= '' then entry = entry .. SEP .. joined end
  redis.call('LPUSH', KEYS[3], entry)
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
  known[event_id] = {offset, joined}
  return joined
end

local out = {}
for a = 6, #ARGV, 10 do
  local event_id, item, etype, ts = ARGV[a], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local source, offset, mark = ARGV[a + 8], ARGV[a + 9], false
  if source ~= '' then mark = watermark(source) end
  local seen = known[event_id]
  if mark and tonumber(offset) <= mark then
    -- Applied before from this source (offsets of one user and partition are applied in order).
    if seen and seen[1] == offset then
      out[#out + 1], out[#out + 2] = 2, seen[2]
    else
      out[#out + 1], out[#out + 2] = 0, ''  -- a duplicate then, or out of the window (its item side done)
    end
  elseif seen then
    out[#out + 1], out[#out + 2] = 0, ''
  else
    out[#out + 1], out[#out + 2] = 1, apply(a, event_id, item, etype, ts, offset)
    if source ~= '' then
      redis.call('HSET', KEYS[4], source, offset)
      marks[source] = tonumber(offset)
    end
  end
end
if ttl > 0 then
  for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
end
return out
