"""The web page's "stream a folder" demo in headless Chromium: the browser's own WebSocket
sends the key in its first frame (an API with keys), then the images within its credits,
and shows each result as it arrives."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_web import _browser_page, chromium  # noqa: F401 - the fixture
from tests.conftest import ARTIFACTS, FIXTURES, start_api, stop_process

KEY = "web-stream-key"
IMAGES = sorted((FIXTURES / "classify").glob("*.jpg"))[:4]


@pytest.fixture()
def keyed_page_url(classify_worker: subprocess.Popen, redis_url: str,
                   tmp_path: Path) -> Iterator[str]:
    url, process = start_api(redis_url, "api-stream-web", VISIONQ_API_KEYS=KEY,
                             VISIONQ_HISTORY_URL=f"sqlite:///{tmp_path / 'history.sqlite3'}")
    yield url
    stop_process(process)


def test_stream_a_folder_from_the_page(chromium: Path, keyed_page_url: str) -> None:  # noqa: F811
    assert len(IMAGES) >= 3
    manager, browser = _browser_page(chromium)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(keyed_page_url)
        page.fill("#api-key", KEY)
        page.select_option("#task", "classify")
        page.set_input_files("#stream-files", [str(p) for p in IMAGES])
        page.wait_for_selector("#stream-status.done", timeout=120_000)
        rows = page.locator("#stream-results tbody tr")
        assert rows.count() == len(IMAGES)
        assert page.locator("#stream-results .pill.succeeded").count() == len(IMAGES)
        assert "%" in rows.nth(0).inner_text()  # a label with its confidence
        assert f"{len(IMAGES)} / {len(IMAGES)} done" in page.inner_text("#stream-status")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_stream.png"), full_page=True)
        assert errors == []
    finally:
        browser.close()
        manager.stop()


def test_the_page_says_when_the_key_is_missing(chromium: Path,  # noqa: F811
                                               keyed_page_url: str) -> None:
    manager, browser = _browser_page(chromium)
    try:
        page = browser.new_page()
        page.goto(keyed_page_url)
        page.fill("#api-key", "")
        page.set_input_files("#stream-files", [str(IMAGES[0])])
        page.wait_for_selector("#stream-status.error", timeout=60_000)
        assert "API key" in page.inner_text("#stream-status")
    finally:
        browser.close()
        manager.stop()
