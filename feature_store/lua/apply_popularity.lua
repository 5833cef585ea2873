-- Adds the popularity of a micro-batch's events, each once, in order. All keys share the hash tag {pop}.
-- KEYS: 1 popularity, 2 counts, 3 epoch, then per event: claim, popularity of the item's category (or KEYS[1])
-- ARGV: 1 tau s, 2 claim ttl s, then per event: item_id, ts (epoch s), weight, category ('' = none)
-- Decay without rescans: an increment w at time t is stored as w * exp((t - epoch) / tau), so ranking by the
-- stored score equals ranking by sum(w * exp(-(now - t) / tau)) at any `now`.
local tau, ttl, applied = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 0, (#KEYS - 3) / 2 - 1 do
  local claim, cat_key = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local item, ts, weight, cat = ARGV[3 + 4 * i], tonumber(ARGV[4 + 4 * i]), tonumber(ARGV[5 + 4 * i]), ARGV[6 + 4 * i]
  if redis.call('SET', claim, 1, 'NX', 'EX', ttl) then
    redis.call('SET', KEYS[3], string.format('%.17g', ts), 'NX')
    local epoch = tonumber(redis.call('GET', KEYS[3]))
    local inc = weight * math.exp((ts - epoch) / tau)
    redis.call('ZINCRBY', KEYS[1], inc, item)
    if cat ~= '' then redis.call('ZINCRBY', cat_key, inc, item) end
    redis.call('HINCRBY', KEYS[2], item, 1)
    applied = applied + 1
  end
end
return applied
