"""The web page in headless Chromium (Debian's ``chromium``, driven by Playwright's Python
package; no browser download): upload a fixture, wait for the result, check that boxes
were drawn on the canvas and that the queues board and recent jobs show up, then filter
the job board's history; the screenshot is saved under tests/artifacts/ for a person to
look at."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, FIXTURES, start_api, stop_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get if missing (root in CI and dev boxes)."""
    if not CHROMIUM.exists() and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True,
                       timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed and apt-get could not install it")
    return CHROMIUM


@pytest.fixture()
def page_url(face_worker: subprocess.Popen, classify_worker: subprocess.Popen,
             redis_url: str, tmp_path: Path) -> Iterator[str]:
    url, process = start_api(redis_url, "api-web",
                             VISIONQ_HISTORY_URL=f"sqlite:///{tmp_path / 'history.sqlite3'}")
    yield url
    stop_process(process)


def _browser_page(chromium_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    manager = sync_api.sync_playwright().start()
    browser = manager.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
    return manager, browser


@pytest.mark.parametrize(("task", "fixture", "min_items"), [
    ("face", FIXTURES / "faces" / "obama_and_biden.jpg", 3),
    ("classify", FIXTURES / "classify" / "caffe_cat.jpg", 5),
])
def test_upload_and_see_the_result(chromium: Path, page_url: str, task: str, fixture: Path,
                                   min_items: int) -> None:
    manager, browser = _browser_page(chromium)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(page_url)
        page.select_option("#task", task)
        page.set_input_files("#file", str(fixture))
        page.wait_for_selector("#status.done", timeout=60_000)
        if task == "face":
            boxes = int(page.get_attribute("#canvas", "data-boxes") or 0)
            assert boxes >= min_items
            # The box colour really is on the canvas (not only counted).
            red_pixels = page.evaluate("""() => {
                const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4)
                    if (d[i] === 255 && d[i + 1] === 59 && d[i + 2] === 48) n++;
                return n; }""")
            assert red_pixels > 100
        else:
            assert page.locator("#labels li").count() == min_items
        page.wait_for_function(
            "document.querySelectorAll('#queues tbody tr').length === 3", timeout=10_000)
        page.wait_for_function(
            "document.querySelectorAll('#jobs tbody tr').length >= 1", timeout=10_000)
        assert "succeeded" in page.inner_text("#jobs")
        assert page.get_attribute("#flower-link", "href").endswith(":5555/")
        # The history board: the job shows up there too, and the filters apply.
        page.select_option("#f-source", "history")
        page.select_option("#f-status", "succeeded")
        page.select_option("#f-task", task)
        page.wait_for_function("""() => {
            const rows = [...document.querySelectorAll('#jobs tbody tr:not(.empty)')];
            return rows.length >= 1 && rows.every((r) => r.innerText.includes('succeeded'));
            }""", timeout=120_000)
        page.select_option("#f-status", "failed")
        page.wait_for_function("""() => [...document.querySelectorAll('#jobs tbody tr')]
            .every((r) => r.classList.contains('empty') || r.innerText.includes('failed'))""",
                               timeout=120_000)
        page.select_option("#f-status", "")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"web_{task}.png"), full_page=True)
        assert errors == []
    finally:
        browser.close()
        manager.stop()
