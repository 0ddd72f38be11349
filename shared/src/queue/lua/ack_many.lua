-- Removes leased ids for good, each if its lease is still held with its token.
-- KEYS[1] leases  KEYS[2] owners  KEYS[3] jobs
-- ARGV: id1, token1, id2, token2, ...
-- Returns one 1 (removed) or 0 (the lease was no longer held) per id, in order.
local done = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    done[#done + 1] = 1
  else
    done[#done + 1] = 0
  end
end
return done
