-- Adds one event's popularity, once. All keys share the hash tag {pop}.
-- KEYS: 1 claim, 2 popularity, 3 popularity of the item's category (ignored when ARGV[5] == ''), 4 counts, 5 epoch
-- ARGV: 1 item_id, 2 ts (epoch s), 3 weight, 4 tau s, 5 category, 6 claim ttl s
-- Decay without rescans: an increment w at time t is stored as w * exp((t - epoch) / tau), so ranking by the
-- stored score equals ranking by sum(w * exp(-(now - t) / tau)) at any `now`.
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', tonumber(ARGV[6])) then return 0 end
local ts = tonumber(ARGV[2])
redis.call('SET', KEYS[5], string.format('%.17g', ts), 'NX')
local epoch = tonumber(redis.call('GET', KEYS[5]))
local inc = tonumber(ARGV[3]) * math.exp((ts - epoch) / tonumber(ARGV[4]))
redis.call('ZINCRBY', KEYS[2], inc, ARGV[1])
if ARGV[5] ~= '' then redis.call('ZINCRBY', KEYS[3], inc, ARGV[1]) end
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
return 1
