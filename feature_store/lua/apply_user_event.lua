-- Applies one event to its user's features, once. All keys share the user's hash tag {u:<user>}.
-- KEYS: 1 claim, 2 events, 3 affinity, 4 cart, 5 purchased, 6 session, 7 stats, 8 items
-- ARGV: 1 event json, 2 item_id ('' for search), 3 type, 4 ts (epoch s), 5 category ('' unknown),
--       6 session_id ('' none), 7 max events, 8 claim ttl s, 9 affinity tau s, 10 affinity weight, 11 partners k
-- Returns {applied (1|0), partners joined by \31}. A replay returns the partners stored with the claim,
-- so the item-side updates of a half-applied event are replayed with exactly the same arguments.
local stored = redis.call('GET', KEYS[1])
if stored then return {0, stored} end

local item, etype, ts = ARGV[2], ARGV[3], tonumber(ARGV[4])
local partners = {}
if item ~= '' and etype ~= 'remove_from_cart' then
  -- The user's last k distinct items other than this one, newest first (read before this event is pushed).
  -- From the plain item list kept beside the JSON events (decoding 50 JSON events per event was most of it).
  local seen = {}
  for _, other in ipairs(redis.call('LRANGE', KEYS[8], 0, -1)) do
    if other ~= '' and other ~= item and not seen[other] then
      seen[other] = true
      partners[#partners + 1] = other
      if #partners >= tonumber(ARGV[11]) then break end
    end
  end
end
local joined = table.concat(partners, '\31')

redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
redis.call('LPUSH', KEYS[8], item)
redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[7]) - 1)

local category, weight, tau = ARGV[5], tonumber(ARGV[10]), tonumber(ARGV[9])
if category ~= '' and weight ~= 0 then
  -- Each category keeps "value:ref_ts": the affinity as of ref_ts. Decay uses event time only.
  local value, ref = 0.0, ts
  local prev = redis.call('HGET', KEYS[3], category)
  if prev then
    local sep = string.find(prev, ':', 1, true)
    value, ref = tonumber(string.sub(prev, 1, sep - 1)), tonumber(string.sub(prev, sep + 1))
  end
  if ts >= ref then
    value = value * math.exp(-(ts - ref) / tau) + weight
    ref = ts
  else
    value = value + weight * math.exp(-(ref - ts) / tau)  -- a late event counts as of its own time
  end
  redis.call('HSET', KEYS[3], category, string.format('%.17g:%.17g', value, ref))
end

if etype == 'add_to_cart' then
  redis.call('SADD', KEYS[4], item)
elseif etype == 'remove_from_cart' then
  redis.call('SREM', KEYS[4], item)
elseif etype == 'purchase' then
  redis.call('SREM', KEYS[4], item)
  redis.call('ZADD', KEYS[5], ts, item)
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -51)
end

local last = tonumber(redis.call('HGET', KEYS[6], 'last_ts') or '-1e300')
if ts >= last then
  redis.call('HSET', KEYS[6], 'last_ts', string.format('%.17g', ts))
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[6], 'session_id', ARGV[6]) end
end

redis.call('HINCRBY', KEYS[7], 'applied', 1)
redis.call('HINCRBY', KEYS[7], 'type:' .. etype, 1)
-- The claim is written last: Lua does not roll back, so a command failing above (say WRONGTYPE on a key that
-- another program wrote) must not leave the event marked applied; the worker dead-letters it instead.
redis.call('SET', KEYS[1], joined, 'EX', tonumber(ARGV[8]))
return {1, joined}
