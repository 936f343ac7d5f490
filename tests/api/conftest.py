"""Fixtures for the API tests: an in-process app on the Redis the session's workers consume
(DB 0), a classify worker, and helpers to post files."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import HISTORY_WRITER_KEY, create_app
from tests.conftest import FIXTURES, WorkerFactory
from visionq.faces_registry import REGISTRY_KEY

FACES = FIXTURES / "faces"
AppFactory = Callable[..., FlaskClient]


@pytest.fixture(scope="session")
def classify_worker(start_worker: WorkerFactory, redis_url: str) -> subprocess.Popen:
    return start_worker(redis_url, "classify", "classify")


@pytest.fixture()
def make_client(tmp_path: Path) -> Iterator[AppFactory]:
    """``make_client(redis_url, **settings)`` -> a Flask test client of a fresh app, with
    an empty job history of its own and no history writer unless asked for."""
    apps: list[Flask] = []

    def _make(redis_url: str, **overrides: Any) -> FlaskClient:
        history = f"sqlite:///{tmp_path / f'history-{len(apps)}.sqlite3'}"
        app = create_app({"redis_url": redis_url, "history_writer": False,
                          "history_url": history, **overrides})
        apps.append(app)
        return app.test_client()

    yield _make
    for app in apps:
        writer = app.extensions.get(HISTORY_WRITER_KEY)
        if writer is not None:
            writer.stop()


@pytest.fixture()
def clean_faces(redis_url: str) -> Iterator[None]:
    conn = redis.Redis.from_url(redis_url)
    conn.delete(REGISTRY_KEY)
    yield
    conn.delete(REGISTRY_KEY)


def files(**named: bytes | str) -> dict[str, Any]:
    """Form data: bytes become file uploads, strings plain fields."""
    return {name: (io.BytesIO(value), f"{name}.jpg") if isinstance(value, bytes) else value
            for name, value in named.items()}


def face(name: str) -> bytes:
    return (FACES / name).read_bytes()
