-- Adds the co-occurrence increments of a micro-batch's events to the items of one bucket, each event once, in
-- order. Keys share {co:<bucket>}. Exactly once as in apply_popularity.lua: per source, the newest offset applied.
-- KEYS: 1..m neighbour lists (one per touched item of the bucket), m + 1 offsets
-- ARGV: 1 max neighbours kept, 2 m, then per event: source ('' = none), offset, n, then n triples
--       (list index, neighbour, weight)
local cap, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local at, applied, marks, offsets = 3, 0, {}, KEYS[m + 1]
while at <= #ARGV do
  local source, offset, n = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  if source ~= '' and marks[source] == nil then
    marks[source] = tonumber(redis.call('HGET', offsets, source)) or -1
  end
  if source == '' or offset > marks[source] then
    local touched = {}
    for j = 0, n - 1 do
      local k = tonumber(ARGV[at + 3 + 3 * j])
      redis.call('ZINCRBY', KEYS[k], ARGV[at + 5 + 3 * j], ARGV[at + 4 + 3 * j])
      touched[k] = true
    end
    -- Each list is bounded after every event, as if applied one by one (deterministic for the same sequence).
    for k in pairs(touched) do redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(cap + 1)) end
    if source ~= '' then
      redis.call('HSET', offsets, source, ARGV[at + 1])
      marks[source] = offset
    end
    applied = applied + 1
  end
  at = at + 3 + 3 * n
end
return applied
