"""Fixtures for the attack tests (issue 30): the API tests' app factory and helpers, each
test one attack that failed on the code before the fix."""

from __future__ import annotations

from tests.api.conftest import classify_worker, clean_faces, make_client  # noqa: F401
