-- Mark running unless final and, in the same round trip, read the record: {attempt,
-- {field, value, ...}}; {-1} unknown, {0} already final.  A redelivery counts another
-- attempt (the running gauge only once); the same call re-sent with its token ARGV[3]
-- counts nothing.  The image is not read here (Lua would copy it): ``JobStore.begin``
-- pipelines a plain GET after the script.
-- KEYS[1] job key, KEYS[2] counts; ARGV: started_at, worker, token.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
if status == 'succeeded' or status == 'failed' then return {0} end
local attempt
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'begin_token') == ARGV[3] then
  -- the same call again (its reply was lost and the client re-sent it): not an attempt
  attempt = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
else
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[2],
             'begin_token', ARGV[3])
  if status == 'queued' then
    redis.call('HINCRBY', KEYS[2], (redis.call('HGET', KEYS[1], 'task') or '?') .. ':running', 1)
  end
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return {attempt, redis.call('HGETALL', KEYS[1])}
