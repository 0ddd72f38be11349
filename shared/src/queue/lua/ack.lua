-- Removes a leased id for good, if the lease is still held with this token.
-- KEYS[1] leases  KEYS[2] owners  KEYS[3] jobs
-- ARGV[1] id  ARGV[2] token
-- Returns 1 if removed, 0 if the lease was no longer held.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
