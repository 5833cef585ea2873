-- Writes one catalog item unless a newer version is already stored. Keys share {i:<item>}.
-- KEYS: 1 meta. ARGV: 1 ts (epoch s), then field/value pairs.
local stored = redis.call('HGET', KEYS[1], 'ts')
if stored and tonumber(stored) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 2))
return 1
