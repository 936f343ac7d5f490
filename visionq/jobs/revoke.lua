-- Revoke a queued job: 1 revoked, 2 running (too late), 0 already final, -1 unknown
-- (visionq.jobs.scripts.REVOKE_*).
-- KEYS[1] job key, KEYS[2] counts, KEYS[3] done channel, KEYS[4] history stream; ARGV:
-- finished_at, error message.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
if status == 'running' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'code', 'revoked', 'error', ARGV[2],
           'finished_at', ARGV[1])
redis.call('HINCRBY', KEYS[2], (redis.call('HGET', KEYS[1], 'task') or '?') .. ':failed', 1)
-- $HISTORY_XADD
redis.call('PUBLISH', KEYS[3], 'failed')
return 1
