-- Adds the popularity of a micro-batch's events, each once, in order. All keys share the hash tag {pop}.
-- KEYS: 1 popularity, 2 counts, 3 epoch, 4 offsets, then per event: the popularity of its category (or KEYS[1])
-- ARGV: 1 tau s, then per event: item_id, ts (epoch s), weight (> 0), category ('' = none), source, offset
-- Exactly once without per-event keys: the events of one source (topic partition) arrive in offset order, so
-- `offsets` keeps the newest offset applied per source and an event at or below it was applied before. An
-- event without a source ('') is applied as given (the caller applies only events its user script applied now).
-- Decay without rescans: a score is log(sum of w * exp((t - epoch) / tau)), so ranking by it equals ranking by
-- sum(w * exp(-(now - t) / tau)) at any `now`. Kept as a logarithm it grows by one per tau of event time instead
-- of overflowing to inf after ~709 tau (~1,024 days at tau = 1 day / ln 2), whatever span the events cover.
local tau, applied, marks = tonumber(ARGV[1]), 0, {}

local function log_add(key, item, x)
  local old = tonumber(redis.call('ZSCORE', key, item))
  if old then
    local hi, lo = math.max(old, x), math.min(old, x)
    x = hi + math.log(1 + math.exp(lo - hi))
  end
  redis.call('ZADD', key, x, item)
end

local function is_new(source, offset)
  if source == '' then return true end
  if marks[source] == nil then marks[source] = tonumber(redis.call('HGET', KEYS[4], source)) or -1 end
  return offset > marks[source]
end

for i = 0, #KEYS - 5 do
  local at = 2 + 6 * i
  local item, ts, weight, cat = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3]
  local source, offset = ARGV[at + 4], tonumber(ARGV[at + 5])
  if is_new(source, offset) then
    redis.call('SET', KEYS[3], string.format('%.17g', ts), 'NX')
    local x = math.log(weight) + (ts - tonumber(redis.call('GET', KEYS[3]))) / tau
    log_add(KEYS[1], item, x)
    if cat ~= '' then log_add(KEYS[5 + i], item, x) end
    redis.call('HINCRBY', KEYS[2], item, 1)
    if source ~= '' then
      redis.call('HSET', KEYS[4], source, ARGV[at + 5])
      marks[source] = offset
    end
    applied = applied + 1
  end
end
return applied
