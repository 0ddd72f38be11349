-- Adds ids that the pool does not hold yet (in any state): ready ones to `ready` by priority,
-- future ones to `delayed` by run_at. Wakes idle claimers.
-- KEYS[1] ready (ZSET, score -priority)   KEYS[2] delayed (ZSET, score run_at ms)
-- KEYS[3] jobs (HASH id -> priority)      KEYS[4] wake (LIST)
-- ARGV    triples: id, priority, run_at ms (0 = now)
-- Returns the number of ids added.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added, ready = 0, 0
for i = 1, #ARGV, 3 do
  local id, prio, run_at = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if redis.call('HSETNX', KEYS[3], id, prio) == 1 then
    added = added + 1
    if run_at > now then
      redis.call('ZADD', KEYS[2], run_at, id)
    else
      redis.call('ZADD', KEYS[1], -prio, id)
      ready = ready + 1
    end
  end
end
for _ = 1, math.min(ready, 64) do
  redis.call('LPUSH', KEYS[4], '1')
end
if ready > 0 then
  redis.call('LTRIM', KEYS[4], 0, 63)
end
return added
