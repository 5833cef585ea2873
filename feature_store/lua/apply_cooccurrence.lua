-- Adds the co-occurrence increments of a micro-batch's events to one item's neighbours, each event once, in
-- order. Keys share {i:<item>}.
-- KEYS: 1 neighbours, then one claim per event
-- ARGV: 1 claim ttl s, 2 max neighbours kept, then per event: n, then n pairs (neighbour, weight)
local ttl, cap, at, applied = tonumber(ARGV[1]), tonumber(ARGV[2]), 3, 0
for k = 2, #KEYS do
  local n = tonumber(ARGV[at])
  if redis.call('SET', KEYS[k], 1, 'NX', 'EX', ttl) then
    for j = 0, n - 1 do
      redis.call('ZINCRBY', KEYS[1], ARGV[at + 2 + 2 * j], ARGV[at + 1 + 2 * j])
    end
    -- Bounded after every event, as if applied one by one (deterministic for the same sequence of events).
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(cap + 1))
    applied = applied + 1
  end
  at = at + 1 + 2 * n
end
return applied
