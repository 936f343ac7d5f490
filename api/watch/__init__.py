"""The bucket watcher behind ``visionq watch``: one job per new object under
``s3://bucket/prefix``, its result (or error) written back as JSON under the results prefix.

Two ways to learn of new objects:

- **event mode** (``sqs_url``): the bucket's ``s3:ObjectCreated:*`` notifications, read from
  SQS (``visionq.s3events`` parses them).  A message is deleted only after every object in
  it is handled (its job created, or its error file written), so a watcher that dies
  mid-message gets it again;
- **scan mode**: the prefix is listed every ``interval_s``; the ETag of each key handled is
  kept in Redis (the cursor), so a restart lists everything but handles only what changed.

The image is not copied: the job's blob is the object itself, ``s3://bucket/key``, marked
borrowed (``Job.blob_owned`` false): a worker reads it in place and never deletes it.

Exactly one job per object version, across duplicate deliveries and restarts:

1. **claim** (one Lua script): ``SET seen:<bucket/key/ETag digest> <job id> NX EX ttl`` and,
   only if that succeeded, record the job id in the ``pending`` hash (state ``claimed``).
   A second delivery of the same version fails the ``SET``: a duplicate, skipped;
2. **create**: HEAD the object (gone: an ``object_not_found`` error file; bigger than
   ``max_bytes`` (``VISIONQ_MAX_BYTES``): a ``payload_too_large`` error file, never read;
   overwritten since: skipped, the newer version has its own event), ``JobStore.admit``
   under that job id (``created``), publish (``queued``);
3. **finish**: a second thread polls the records of ``queued`` jobs and, when one is final,
   writes ``<results prefix><key below the prefix>.json`` and then drops the pending entry.

S3 hiccups are retried, never turned into results: a HEAD that meets a transient error
(``visionq.s3events.is_transient_error``: no connection, 5xx, throttling) is tried
``HEAD_ATTEMPTS`` times with back-off, then left for the next round.  The worker reads the
object itself (``visionq.blobstore.S3ObjectReader``: at most ``max_bytes``, retried with
back-off); a job that still could not read it ends ``source_unavailable``, and the watcher
then makes a new job for the object after ``reread_backoff_s``
(``VISIONQ_WATCH_REREAD_BACKOFF_S``, doubling), up to ``REREAD_ROUNDS`` times before writing
that error as the result.

A watcher killed anywhere resumes from ``pending`` when restarted: a ``claimed`` entry is
created (unless its record exists), a ``created`` one published again (a duplicate message
is dropped by the worker), a ``queued`` one waited for; a result written but not yet
dropped from ``pending`` is written again with the same name and content.  Nothing is lost
and no object gets a second job.  Run one watcher per watched prefix.

The modules: ``config`` (what one watcher watches), ``watcher`` (the loop: intake, claim,
create, finish; the claim script is ``claim.lua``), ``documents`` (the result files).  It
imports only the core (``visionq``); the ``visionq watch`` command wires in the tasks'
``enqueue`` and monitoring's metrics.
"""
