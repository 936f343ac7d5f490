-- Give claimed messages back (workers.claim.give_back).  KEYS: the queue's list, kombu's
-- unacked hash and index, the ledger, the autoscaler's busy set.  ARGV[1]: the busy member
-- of the claim ('' none), then the tags to give back, in claim order (none: all the ledger
-- holds).  Each goes back to the end of the queue that is taken next (so the first claimed
-- runs first), unless it is no longer unacked (acked, or already restored by kombu's
-- sweep).  Returns how many went back.
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[5], ARGV[1]) end
local tags = {}
for i = 2, #ARGV do tags[#tags + 1] = ARGV[i] end
if #tags == 0 then tags = redis.call('HKEYS', KEYS[4]) end
local back = 0
for i = #tags, 1, -1 do
  local raw = redis.call('HGET', KEYS[4], tags[i])
  if raw then
    redis.call('HDEL', KEYS[4], tags[i])
    redis.call('ZREM', KEYS[3], tags[i])
    if redis.call('HDEL', KEYS[2], tags[i]) == 1 then
      redis.call('RPUSH', KEYS[1], raw)
      back = back + 1
    end
  end
end
if redis.call('HLEN', KEYS[4]) == 0 then redis.call('DEL', KEYS[4]) end
return back
