"""The Celery application: ``celery -A tasks worker -Q face`` starts a face worker."""

from __future__ import annotations

from celery import Celery

from tasks.config import celery_config
from visionq.settings import get_settings

app = Celery("visionq")
app.config_from_object(celery_config(get_settings()))
