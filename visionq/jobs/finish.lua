-- Finish a job (succeeded or failed): the first finish wins.
-- KEYS[1] job key, KEYS[2] counts, KEYS[3] done channel, KEYS[4] history stream, KEYS[5]
-- (optional) the blob; ARGV: ttl, then field/value pairs (the first pair is status).
-- Returns 1 when this call finished the job, 0 when it was already final (a duplicate
-- delivery), -1 when the job is unknown.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local task = redis.call('HGET', KEYS[1], 'task') or '?'
if status == 'running' then redis.call('HINCRBY', KEYS[2], task .. ':running', -1) end
redis.call('HINCRBY', KEYS[2], task .. ':' .. ARGV[3], 1)
if KEYS[5] and redis.call('HGET', KEYS[1], 'blob_owned') ~= '0' then
  redis.call('DEL', KEYS[5])  -- a borrowed blob (blob_owned 0) is never deleted
end
-- $HISTORY_XADD
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
