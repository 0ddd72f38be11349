-- Removes an id whatever its state (ready, delayed or leased).
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leases  KEYS[4] jobs  KEYS[5] owners
-- ARGV[1] id
-- Returns 1 if the pool held it, 0 otherwise.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return redis.call('HDEL', KEYS[4], ARGV[1])
