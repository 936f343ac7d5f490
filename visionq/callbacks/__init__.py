"""Signed webhooks: a job's ``callback_url`` (and ``VISIONQ_CALLBACK_URL``) receives the
finished job, POSTed by the ``callbacks`` role.

- ``destinations``: which URLs a webhook may go to (``VISIONQ_CALLBACK_ALLOW``).
- ``signing``: the ``X-Visionq-Signature`` scheme and the secrets (global, per API key).
- ``delivery``: one attempt (pinned to the checked address, bounded).
- ``sender``: the role reading the ``visionq:history`` stream, retrying with back-off and
  recording every attempt on the job.
"""
