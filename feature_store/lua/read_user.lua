-- One user's features in one call (read-only). Keys share {u:<user>}.
-- KEYS: 1 events, 2 affinity, 3 cart, 4 purchased, 5 session
-- Returns {events (newest first), affinity (flat field, value), cart, purchased (flat item, ts), session_id or nil}.
return {
  redis.call('LRANGE', KEYS[1], 0, -1),
  redis.call('HGETALL', KEYS[2]),
  redis.call('ZRANGE', KEYS[3], 0, -1),
  redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'),
  redis.call('HGET', KEYS[5], 'session_id'),
}
