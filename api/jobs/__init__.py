"""``/v1/jobs``: submit an image (or a batch) for a task (202 + id), list recent jobs,
read a job (long-poll with ?wait), revoke a queued job; jobs whose Redis record expired
come from the durable history (``visionq.history``), which ``/v1/jobs/export`` dumps.

One module per concern; this one is the blueprint and its route table:

- ``submit``: reading the upload (form or JSON) and submitting it;
- ``listing``: the paged list, Redis first, then the history;
- ``export``: the history as CSV / JSON lines;
- ``job``: one job, read or revoked;
- ``args``: the query arguments those share (``?wait=``, the filters);
- ``history``: the ``503`` those answer when the history's store is down (a job as JSON
  is the core's ``visionq.job_json``).
"""

from __future__ import annotations

from flask import Blueprint

from api.jobs import export, job, listing, submit

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

# (rule, view, methods), in the order they were declared with decorators; each endpoint is
# "jobs.<view name>" (url_for("jobs.get_job", ...)).
ROUTES = (
    ("", submit.submit, ["POST"]),
    ("/", submit.submit, ["POST"]),
    ("/batch", submit.submit_batch, ["POST"]),
    ("", listing.list_jobs, ["GET"]),
    ("/", listing.list_jobs, ["GET"]),
    ("/export", export.export_jobs, ["GET"]),
    ("/<job_id>", job.revoke_job, ["DELETE"]),
    ("/<job_id>", job.get_job, ["GET"]),
)
for rule, view, methods in ROUTES:
    bp.add_url_rule(rule, view_func=view, methods=methods)
