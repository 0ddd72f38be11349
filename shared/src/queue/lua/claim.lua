-- Promotes a bounded number of due delayed ids, then leases up to ARGV[3] of the best ready ids.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leases (ZSET, score deadline ms)
-- KEYS[4] jobs   KEYS[5] owners (HASH id -> token)  KEYS[6] seq (token counter)
-- ARGV[1] lease ttl ms   ARGV[2] most delayed ids to promote   ARGV[3] most ids to lease
-- Returns {{id, token}, ...}, best first; empty when nothing is due.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local prio = redis.call('HGET', KEYS[4], id)
  if prio then
    redis.call('ZADD', KEYS[1], -tonumber(prio), id)
  end
end
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[3]))
local deadline = now + tonumber(ARGV[1])
local leased = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local token = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[5], id, token)
  redis.call('ZADD', KEYS[3], deadline, id)
  leased[#leased + 1] = {id, token}
end
return leased
