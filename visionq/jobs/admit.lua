-- Admit a batch of jobs all or nothing, after the backlog check, in one round trip.
-- KEYS[1] the queue's list (kombu: the bare name), KEYS[2] recent index, then per job its
-- record key and blob key.  ARGV: backlog limit, job ttl, recent cap, queued_at, task,
-- options JSON, submitter ('' none), callback URL ('' none), then per job: job id, mode.
-- Mode '1': the image was stored under the blob key by a SET in the same MULTI
-- transaction, just before this script (natively: passing the bytes through Lua copied
-- them, ~1.2 CPU-µs per KB in Redis); a refused admission deletes it again.  '0': stored
-- elsewhere, owned (deleted when the job ends); '2': borrowed, never deleted.  After
-- those, optionally one Celery message per job (``tasks.message``), pushed onto KEYS[1]
-- once every record is written: the job and its message exist together or not at all.
-- Returns {0, backlog} when the queue is full (nothing kept), {1} otherwise.
local n = (#KEYS - 2) / 2
local backlog = redis.call('LLEN', KEYS[1])
if backlog + n > tonumber(ARGV[1]) then
  for i = 1, n do
    if ARGV[8 + 2 * i] == '1' then redis.call('DEL', KEYS[2 + 2 * i]) end
  end
  return {0, backlog}
end
for i = 1, n do
  local job_key, blob_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local job_id, mode = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  redis.call('HSET', job_key, 'task', ARGV[5], 'status', 'queued', 'blob', blob_key,
             'options', ARGV[6], 'queued_at', ARGV[4], 'attempts', 0)
  if mode == '2' then redis.call('HSET', job_key, 'blob_owned', '0') end
  if ARGV[7] ~= '' then redis.call('HSET', job_key, 'submitter', ARGV[7]) end
  if ARGV[8] ~= '' then redis.call('HSET', job_key, 'callback_url', ARGV[8]) end
  redis.call('EXPIRE', job_key, tonumber(ARGV[2]))
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), job_id)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[3]) - 1)
for i = 9 + 2 * n, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
return {1}
