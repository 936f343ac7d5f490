-- Claim the next of the queue's messages for this delivery (workers.claim), riding on the
-- finish of the job before it, and only if that finish was recorded: KEYS[1] the job just
-- finished, whose finished_at must be ARGV[1] (the finish script did not run — a flushed
-- script cache — or another delivery finished the job: no claim, so a re-sent pipeline
-- cannot claim twice); KEYS[2] the queue's list (priority 0: the bare name), KEYS[3] and
-- KEYS[4] kombu's unacked hash and index, KEYS[5] the delivery's ledger, KEYS[6]
-- (optional) the autoscaler's busy set.  ARGV[2] most to claim, ARGV[3] the worker's pool
-- processes, ARGV[4] the task name a message must carry, ARGV[5] the ledger's TTL, ARGV[6]
-- now, ARGV[7] the member marking the host busy while it holds claimed jobs, ARGV[8] its
-- expiry.  Claims min(most, queue length // processes) from the end BRPOP takes next: each
-- goes into kombu's unacked hash and index (the entry kombu's QoS.append writes, built from
-- the message's own bytes) and into the ledger.  A message that is not a plain job of this
-- task (another task, an ETA, not JSON) is pushed back where it was and ends the claim.
-- Returns {tag, job id, ...}.
local claimed = {}
if redis.call('HGET', KEYS[1], 'finished_at') == ARGV[1] then
  local n = math.min(tonumber(ARGV[2]),
                     math.floor(redis.call('LLEN', KEYS[2]) / tonumber(ARGV[3])))
  for _ = 1, n do
    local raw = redis.call('RPOP', KEYS[2])
    if not raw then break end
    local ok, msg = pcall(cjson.decode, raw)
    local headers = ok and type(msg) == 'table' and msg.headers or nil
    local props = ok and type(msg) == 'table' and msg.properties or nil
    local info = type(props) == 'table' and props.delivery_info or nil
    if type(headers) ~= 'table' or type(props) ~= 'table' or type(info) ~= 'table'
        or headers.task ~= ARGV[4] or type(headers.id) ~= 'string'
        or type(props.delivery_tag) ~= 'string'
        or (headers.eta ~= nil and headers.eta ~= cjson.null) then
      redis.call('RPUSH', KEYS[2], raw)
      break
    end
    local exchange = type(info.exchange) == 'string' and info.exchange or ''
    local routing_key = type(info.routing_key) == 'string' and info.routing_key or ''
    local tag = props.delivery_tag
    redis.call('HSET', KEYS[3], tag, '[' .. raw .. ', ' .. cjson.encode(exchange) .. ', '
               .. cjson.encode(routing_key) .. ']')
    redis.call('ZADD', KEYS[4], ARGV[6], tag)
    redis.call('HSET', KEYS[5], tag, raw)
    claimed[#claimed + 1] = tag
    claimed[#claimed + 1] = headers.id
  end
  if #claimed > 0 then redis.call('EXPIRE', KEYS[5], tonumber(ARGV[5])) end
end
if KEYS[6] then
  if #claimed > 0 then redis.call('ZADD', KEYS[6], ARGV[8], ARGV[7])
  else redis.call('ZREM', KEYS[6], ARGV[7]) end
end
return claimed
