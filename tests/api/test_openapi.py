"""``/openapi.json`` matches the code: every Flask route is documented and every documented
operation is routed; option schemas are the validators' own; schemathesis fuzzes the
running API (bounded) and finds no 500 and no response outside the schema."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from api import create_app
from api.options import OPTION_MODELS
from tests.conftest import ARTIFACTS, BIN, log_tail, start_api, stop_process

UNDOCUMENTED = {"/static/{filename}", "/docs/assets/{name}"}
"""Asset routes: files, not API operations."""
SCHEMATHESIS_EXAMPLES = 12
MODE = os.environ.get("VISIONQ_FUZZ_MODE", "positive")
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def _flask_operations() -> set[tuple[str, str]]:
    app = create_app({"redis_url": "redis://127.0.0.1:1/0"})
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        if path != "/":
            path = path.rstrip("/")
        if path in UNDOCUMENTED:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operations.add((method.lower(), path))
    return operations


def test_every_route_is_documented_and_vice_versa() -> None:
    spec = create_app({"redis_url": "redis://127.0.0.1:1/0"}).test_client().get(
        "/openapi.json").get_json()
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert documented == _flask_operations()


def test_option_schemas_come_from_the_validators() -> None:
    spec = create_app({"redis_url": "redis://127.0.0.1:1/0"}).test_client().get(
        "/openapi.json").get_json()
    for task, model in OPTION_MODELS.items():
        schema = spec["components"]["schemas"][f"{task.capitalize()}Options"]
        assert set(schema["properties"]) == set(model.model_fields)
        assert schema["additionalProperties"] is False


def test_option_defaults_are_what_the_plugins_run_with() -> None:
    """The document's defaults are the ones a job gets: each plugin parses a job's options
    with its task's model, so an empty options object means these values."""
    from workers import registry
    from workers.plugins.centernet_mbv3 import DEFAULT_MIN_CONFIDENCE

    spec = create_app({"redis_url": "redis://127.0.0.1:1/0"}).test_client().get(
        "/openapi.json").get_json()["components"]["schemas"]
    for name in ("face_recognition", "centernet_mbv3", "efficientnet_lite0"):
        plugin = registry.model_class(name)
        assert plugin.options is OPTION_MODELS[plugin.task]
        runs_with = plugin.options.model_validate({}).model_dump(mode="json")
        schema = spec[f"{plugin.task.capitalize()}Options"]["properties"]
        assert {option: schema[option].get("default") for option in schema} == runs_with
    assert spec["DetectOptions"]["properties"]["min_confidence"]["default"] == 0.3
    assert DEFAULT_MIN_CONFIDENCE == 0.3


def test_docs_page_and_assets() -> None:
    client = create_app({"redis_url": "redis://127.0.0.1:1/0"}).test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and b"/openapi.json" in page.data
    if b"swagger-ui-bundle.js" in page.data:
        asset = client.get("/docs/assets/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.data) > 100_000
    assert client.get("/docs/assets/../../settings.py").status_code == 404


@pytest.fixture()
def fuzz_api(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    """A live API on a Redis DB without workers: valid images time out quickly (504)."""
    url, process = start_api(f"redis://127.0.0.1:{redis_server[0]}/5", "api-fuzz",
                             VISIONQ_SYNC_TIMEOUT_S="0.5")
    yield url
    stop_process(process)


def test_schemathesis(fuzz_api: str) -> None:
    report = ARTIFACTS / "schemathesis"
    command = [str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run",
               f"{fuzz_api}/openapi.json", "--mode", MODE,
               "--checks", CHECKS, "--max-examples", str(SCHEMATHESIS_EXAMPLES),
               "--phases", "examples,fuzzing", "--seed", "1", "--request-timeout", "10",
               "--exclude-path", "/metrics", "--report", "junit", "--report-dir", str(report)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # cwd: schemathesis keeps a .schemathesis/ cache
    result = subprocess.run(command, capture_output=True, text=True, timeout=420, cwd=ARTIFACTS)
    (ARTIFACTS / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-6000:] + log_tail("api-fuzz")
    assert requests.get(f"{fuzz_api}/healthz", timeout=5).status_code == 200
