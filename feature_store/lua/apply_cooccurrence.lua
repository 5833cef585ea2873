-- Adds the co-occurrence increments of a micro-batch's events to the items of one bucket, each event once, in
-- order. Keys share {co:<bucket>}.
-- KEYS: 1..m neighbour lists (one per touched item of the bucket), then one claim per event
-- ARGV: 1 claim ttl s, 2 max neighbours kept, 3 m, then per event: n, then n triples (list index, neighbour, weight)
local ttl, cap, m = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local at, applied = 4, 0
for c = m + 1, #KEYS do
  local n = tonumber(ARGV[at])
  if redis.call('SET', KEYS[c], 1, 'NX', 'EX', ttl) then
    local touched = {}
    for j = 0, n - 1 do
      local k = tonumber(ARGV[at + 1 + 3 * j])
      redis.call('ZINCRBY', KEYS[k], ARGV[at + 3 + 3 * j], ARGV[at + 2 + 3 * j])
      touched[k] = true
    end
    -- Each list is bounded after every event, as if applied one by one (deterministic for the same sequence).
    for k in pairs(touched) do redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(cap + 1)) end
    applied = applied + 1
  end
  at = at + 1 + 3 * n
end
return applied
