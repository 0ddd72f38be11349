-- Extends a lease if it is still held with this token.
-- KEYS[1] leases  KEYS[2] owners
-- ARGV[1] id  ARGV[2] token  ARGV[3] ttl ms
-- Returns 1 if extended, 0 if the lease is gone or held by a newer claim.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
