-- (included in finish.lua and revoke.lua) Appends the just finished job's record to the
-- history stream KEYS[4]: the job id (KEYS[1] after the key prefix), then every field of
-- its hash, so a job that ends is in the stream in the same atomic step.  The stream's
-- cap and where the id starts are filled in by visionq.jobs.scripts.
redis.call('XADD', KEYS[4], 'MAXLEN', '~', $MAXLEN, '*', 'id', string.sub(KEYS[1], $ID_FROM), unpack(redis.call('HGETALL', KEYS[1])))
