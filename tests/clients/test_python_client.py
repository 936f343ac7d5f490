"""visionq-client (clients/python) as a user gets it: its wheel and sdist build
(``python -m build``) and pass ``twine check``; the wheel, pip-installed into a fresh
venv, brings only the light dependencies and none of the server; the package's own tests
then pass in that venv against the live API and face worker of the test session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import redis

from tests.conftest import ARTIFACTS, FIXTURES, REPO, WorkerFactory
from visionq.keys import WORKER_KEY_PREFIX

CLIENT = REPO / "clients" / "python"
DIST = CLIENT / "dist"
LIGHT = {"visionq-client", "requests", "simple-websocket",
         # what those two pull in
         "urllib3", "idna", "charset-normalizer", "certifi", "wsproto", "h11"}
VENV_TOOLS = {"pip", "setuptools", "wheel"}
STEP_TIMEOUT_S = 300


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def uv_dir() -> str | None:
    """Where uv is (``make`` installs it for the system Python): ``build --installer uv``
    sets up its isolated build environment in ~2 s instead of ~25 s with pip."""
    found = shutil.which("uv")
    if found:
        return str(Path(found).parent)
    python = shutil.which("python3")
    if python is None:
        return None
    probe = subprocess.run([python, "-c", "import uv; print(uv.find_uv_bin())"],
                           capture_output=True, text=True, timeout=60)
    return str(Path(probe.stdout.strip()).parent) if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def dist() -> tuple[Path, Path]:
    """The wheel and sdist, built afresh into clients/python/dist/ in an isolated build
    environment (its backend, hatchling, from PyPI) and checked by twine."""
    shutil.rmtree(DIST, ignore_errors=True)
    command: list[str | Path] = [sys.executable, "-m", "build", "--sdist", "--wheel",
                                 "--outdir", DIST, CLIENT]
    env = dict(os.environ)
    uv = uv_dir()
    if uv is not None:
        command[3:3] = ["--installer", "uv"]
        env["PATH"] = os.pathsep.join([uv, env.get("PATH", "")])
    run(command, env=env)
    [wheel], [sdist] = DIST.glob("*.whl"), DIST.glob("*.tar.gz")
    run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist])
    return wheel, sdist


def test_the_wheel_holds_only_its_package(dist: tuple[Path, Path]) -> None:
    wheel, sdist = dist
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        metadata = archive.read(next(n for n in archive.namelist()
                                     if n.endswith(".dist-info/METADATA"))).decode()
    assert tops == {"visionq_client", "visionq_client-0.1.0.dist-info"}  # no api/tasks/workers
    requires = sorted(line.split(":", 1)[1].strip() for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:"))
    assert requires == ["requests>=2.31", "simple-websocket<2,>=1.1"]
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "tests/test_jobs.py",
            "src/visionq_client/client.py"} <= names


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel pip-installed (its dependencies from PyPI)."""
    path = tmp_path_factory.mktemp("client-venv")
    run([sys.executable, "-m", "venv", path])
    run([path / "bin" / "python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", dist[0]])
    return path


def installed(venv: Path) -> set[str]:
    script = ("import importlib.metadata as m, json; print(json.dumps(sorted("
              "{d.metadata['Name'].lower() for d in m.distributions()})))")
    out = run([venv / "bin" / "python", "-c", script])
    return set(json.loads(out.stdout))


def test_a_fresh_venv_gets_only_the_light_dependencies(venv: Path) -> None:
    assert installed(venv) - VENV_TOOLS == LIGHT
    python = venv / "bin" / "python"
    where = run([python, "-c", "import visionq_client as v; print(v.__file__, v.__version__)"],
                cwd=venv, env={"PATH": os.environ["PATH"]})
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(venv) and version == "0.1.0"
    for module in ("visionq", "api", "tasks", "workers", "celery", "boto3"):
        gone = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              cwd=venv, env={"PATH": os.environ["PATH"]}, timeout=60)
        assert gone.returncode != 0, module


@pytest.fixture(scope="module")
def task_workers(start_worker: WorkerFactory, redis_url: str,
                 face_worker: subprocess.Popen) -> None:
    """A worker for every built-in task behind ``api_url``: the session's own when an
    earlier test started it (tests/api does in a full run), else started here."""
    from tests.api.test_deepstack import _detect_model_ready

    reason = _detect_model_ready()
    if reason:
        pytest.skip(reason)
    client = redis.Redis.from_url(redis_url)
    for queue in ("classify", "detect"):
        if not client.exists(f"{WORKER_KEY_PREFIX}{queue}@testhost"):
            start_worker(redis_url, queue, queue)


def test_its_tests_pass_in_the_venv_against_a_live_stack(
        venv: Path, api_url: str, task_workers: None) -> None:
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "pytest>=8"])
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "VISIONQ_URL": api_url, "VISIONQ_CLIENT_FIXTURES": str(FIXTURES)}
    done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
                          cwd=CLIENT, env=env, capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "visionq-client-tests.log").write_text(done.stdout + done.stderr)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary, done.stdout[-3000:]


def test_the_stream_header_matches_the_servers_protocol() -> None:
    """The client keeps its own copy of the frame format (it cannot import the server)."""
    from visionq_client import stream as client

    from visionq import stream_protocol as server

    for args in [("face",), ("detect", {"min_confidence": 0.5}, "cam/1", True),
                 ("classify", None, "r")]:
        assert client.header_frame(*args) == server.header_frame(*args)
        assert server.parse_header(json.loads(client.header_frame(*args)))
    assert client.STREAM_PATH == server.STREAM_PATH
    for status in ("queued", "succeeded", "failed", "rejected"):
        assert client.is_final({"status": status}) == server.is_final({"status": status})
