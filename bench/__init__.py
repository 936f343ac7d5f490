"""visionq benchmarks (issue 8): ``python -m bench <subcommand>``; not part of ``make test``.

Every run starts what it measures itself (Redis without persistence in a temp dir, the API
under gunicorn, Celery workers, the baselines), bounds its own duration, writes
``bench/results/<name>.json`` with the machine's facts and draws its PNG plots next to it.
"""
