"""These tests run against a live visionq: ``VISIONQ_URL`` (and ``VISIONQ_API_KEY`` when
the API has keys); ``VISIONQ_CLIENT_FIXTURES``: visionq's test fixtures folder (face
photos; the face tests skip without it).  Tasks without a worker (``/readyz``) skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from visionq_client import Client


@pytest.fixture(scope="session")
def api_url() -> str:
    url = os.environ.get("VISIONQ_URL")
    if not url:
        pytest.skip("VISIONQ_URL is not set (a live visionq to test against)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str | None:
    return os.environ.get("VISIONQ_API_KEY") or None


@pytest.fixture()
def client(api_url: str, api_key: str | None) -> Iterator[Client]:
    with Client(api_url, api_key=api_key) as c:
        yield c


@pytest.fixture(scope="session")
def workers(api_url: str) -> dict[str, int]:
    body = requests.get(f"{api_url}/readyz", timeout=10).json()
    return {task: int(n) for task, n in (body.get("workers") or {}).items()}


def need_worker(workers: dict[str, int], task: str) -> str:
    if not workers.get(task):
        pytest.skip(f"no {task} worker behind this API")
    return task


@pytest.fixture(scope="session")
def face_task(workers: dict[str, int]) -> str:
    return need_worker(workers, "face")


@pytest.fixture(scope="session")
def detect_task(workers: dict[str, int]) -> str:
    return need_worker(workers, "detect")


@pytest.fixture(scope="session")
def classify_task(workers: dict[str, int]) -> str:
    return need_worker(workers, "classify")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    root = os.environ.get("VISIONQ_CLIENT_FIXTURES")
    if not root or not (Path(root) / "faces" / "obama.jpg").is_file():
        pytest.skip("VISIONQ_CLIENT_FIXTURES (visionq's test fixtures folder) is not set")
    return Path(root)


@pytest.fixture(scope="session")
def faces(fixtures: Path) -> Path:
    return fixtures / "faces"
