"""The one benchmark harness: every benchmark under ``bench/`` is a short file on top of it.

- ``common``: machine facts, percentiles, ``Run`` (one ``bench/results/<name>.json`` with
  the command that made it, plots beside it), ``RAW`` (logs and dumps, never committed).
- ``stack``: start and stop what is measured: ``VisionqStack`` (embedded Redis, the API,
  one worker per task, planned as ``visionq up`` plans them), ``SyncBaseline``.
- ``loadgen`` and ``http``: open-loop Poisson load with latency from the scheduled arrival.
- ``procstat`` and ``redis_stats``: CPU from /proc per process tree, RSS; Redis CPU and
  commands between two snapshots.
- ``plots``: goodput curves, latency CDFs, bars (small palette PNGs).
- ``sync_flask``, ``ceiling``, ``sleep_model``: the baselines.
"""
