-- The watcher's claim of one object version (api.watch.watcher): the version's seen key is
-- set only if absent, and only then is the job id recorded as pending ("claimed").
-- KEYS[1] the version's seen key, KEYS[2] the pending hash; ARGV: ttl, job id, entry JSON.
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
