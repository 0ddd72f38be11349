-- Moves due delayed ids to ready and wakes idle claimers.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] jobs  KEYS[4] wake
-- ARGV[1] most ids to move in one call
-- Returns the number moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local prio = redis.call('HGET', KEYS[3], id)
  if prio then
    redis.call('ZADD', KEYS[1], -tonumber(prio), id)
  end
end
for _ = 1, math.min(#due, 64) do
  redis.call('LPUSH', KEYS[4], '1')
end
if #due > 0 then
  redis.call('LTRIM', KEYS[4], 0, 63)
end
return #due
