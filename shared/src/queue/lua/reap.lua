-- Drops ids whose lease deadline has passed and returns them.
-- KEYS[1] leases  KEYS[2] owners  KEYS[3] jobs
-- ARGV[1] most ids to drop in one call
-- Returns the dropped ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return expired
