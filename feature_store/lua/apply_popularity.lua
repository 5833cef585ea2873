-- Adds the popularity of a micro-batch's events, each once, in order. All keys share the hash tag {pop}.
-- KEYS: 1 popularity, 2 counts, 3 epoch, then per event: claim, popularity of the item's category (or KEYS[1])
-- ARGV: 1 tau s, 2 claim ttl s, then per event: item_id, ts (epoch s), weight (> 0), category ('' = none)
-- Decay without rescans: a score is log(sum of w * exp((t - epoch) / tau)), so ranking by it equals ranking by
-- sum(w * exp(-(now - t) / tau)) at any `now`. Kept as a logarithm it grows by one per tau of event time instead
-- of overflowing to inf after ~709 tau (~1,024 days at tau = 1 day / ln 2), whatever span the events cover.
local tau, ttl, applied = tonumber(ARGV[1]), tonumber(ARGV[2]), 0

local function log_add(key, item, x)
  local old = tonumber(redis.call('ZSCORE', key, item))
  if old then
    local hi, lo = math.max(old, x), math.min(old, x)
    x = hi + math.log(1 + math.exp(lo - hi))
  end
  redis.call('ZADD', key, x, item)
end

for i = 0, (#KEYS - 3) / 2 - 1 do
  local claim, cat_key = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local item, ts, weight, cat = ARGV[3 + 4 * i], tonumber(ARGV[4 + 4 * i]), tonumber(ARGV[5 + 4 * i]), ARGV[6 + 4 * i]
  if redis.call('SET', claim, 1, 'NX', 'EX', ttl) then
    redis.call('SET', KEYS[3], string.format('%.17g', ts), 'NX')
    local x = math.log(weight) + (ts - tonumber(redis.call('GET', KEYS[3]))) / tau
    log_add(KEYS[1], item, x)
    if cat ~= '' then log_add(cat_key, item, x) end
    redis.call('HINCRBY', KEYS[2], item, 1)
    applied = applied + 1
  end
end
return applied
