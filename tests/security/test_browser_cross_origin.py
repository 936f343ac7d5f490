"""Issue 30, item 2, in a real browser: a page served from another origin (another site:
``localhost`` against the API on ``127.0.0.1``) sends what any web page can send without
asking anyone, ``fetch(url, {method: "POST", mode: "no-cors", body: FormData})``, to
restore an empty face backup, register a face and add a model on a keyless stack.  The
requests reach the API (its request counter shows the 403s) and nothing changes."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import requests

from tests.api.conftest import face
from tests.api.test_web import _browser_page, chromium  # noqa: F401 - fixture
from tests.conftest import start_api, stop_process
from visionq.faces_registry import REGISTRY_KEY, FaceRegistry

ENCODING = [0.01 * i for i in range(128)]
EMPTY_BACKUP = json.dumps({"format": "visionq-faces", "version": 1, "encoding_size": 128,
                           "faces": {}})
ATTACK = """async () => {
  const bytes = Uint8Array.from(atob(IMAGE), c => c.charCodeAt(0));
  const form = (fields) => { const f = new FormData();
    for (const [k, v] of Object.entries(fields)) {
      if (typeof v === "string") f.append(k, v); else f.append(k, v, k + ".bin");
    }
    return f; };
  const send = (path, fields) => fetch(API + path, {method: "POST", mode: "no-cors",
                                                    body: form(fields)});
  const sent = await Promise.allSettled([
    send("/v1/restore", {file: new Blob([BACKUP], {type: "application/json"})}),
    send("/v1/vision/face/register", {image: new Blob([bytes]), userid: "mallory"}),
    send("/v1/vision/addmodel", {model: new Blob([bytes]), manifest: MANIFEST}),
  ]);
  return sent.map(r => r.status);
}"""


def _serve_attacker_page() -> tuple[ThreadingHTTPServer, str]:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"<!doctype html><title>cats</title><p>nothing to see"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{server.server_address[1]}/"


@pytest.fixture()
def keyless_api(redis_url: str, face_worker: subprocess.Popen,
                tmp_path: Path) -> Iterator[tuple[str, Path]]:
    models = tmp_path / "models"
    url, process = start_api(redis_url, "api-cross-origin", VISIONQ_MODELS_DIR=str(models),
                             PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
                             VISIONQ_STATE_DIR=str(tmp_path / "state"))
    yield url, models
    stop_process(process)


def _refused(api: str) -> float:
    """403s the API answered on the three routes (its own request counter)."""
    total = 0.0
    for line in requests.get(f"{api}/metrics", timeout=30).text.splitlines():
        if line.startswith("visionq_http_requests_total{") and 'status="403"' in line and any(
                route in line for route in ("/v1/restore", "/v1/vision/face/register",
                                            "/v1/vision/addmodel")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_page_on_another_site_changes_nothing(chromium: Path,  # noqa: F811
                                                keyless_api: tuple[str, Path],
                                                redis_url: str) -> None:
    api, models = keyless_api
    conn = redis.Redis.from_url(redis_url)
    conn.delete(REGISTRY_KEY)
    registry = FaceRegistry(conn)
    registry.add("alice", [ENCODING])
    server, page_url = _serve_attacker_page()
    manager, browser = _browser_page(chromium)
    try:
        page = browser.new_page()
        page.goto(page_url)
        script = (ATTACK.replace("IMAGE", json.dumps(base64.b64encode(
            face("obama_small.jpg")).decode())).replace("API", json.dumps(api))
            .replace("BACKUP", json.dumps(EMPTY_BACKUP))
            .replace("MANIFEST", json.dumps(json.dumps({"name": "evil", "kind": "classify",
                                                        "format": "onnx", "labels": "a"}))))
        assert page.evaluate(script) == ["fulfilled"] * 3  # sent; the answers are opaque
    finally:
        browser.close()
        manager.stop()
        server.shutdown()
    assert _refused(api) >= 3  # each request arrived and was refused
    assert registry.users() == ["alice"]
    assert not (models / "custom").exists() or not any((models / "custom").iterdir())
    conn.delete(REGISTRY_KEY)
