-- Adds one event's co-occurrence increments to one item's neighbour set, once. Keys share {i:<item>}.
-- KEYS: 1 claim, 2 neighbours
-- ARGV: 1 claim ttl s, 2 max neighbours kept, then pairs (neighbour, weight)...
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[2], ARGV[i + 1], ARGV[i])
end
-- Bounded: drop the weakest neighbours beyond the cap (deterministic for the same sequence of events).
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
return 1
