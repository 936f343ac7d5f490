"""Many machines on one: a broker node (Redis), an API node (gunicorn), worker nodes
(``celery -A tasks worker -Q classify``) and a client node, each in its own network
namespace bound to its own address on a private bridge (see tests/deploy/netns.py).

A worker node is given nothing but ``REDIS_URL=redis://:<password>@<broker>:6379/0``: this is
what proves that ``celery worker`` runs on any machine that can reach Redis.  Then the
worker node dies mid-job (SIGKILL to its whole process group, like a lost instance), a
second worker node joins, and every job still succeeds exactly as often as it should.

Skipped, with the reason, where namespaces cannot be made (not root, no iproute2, no
CAP_SYS_ADMIN).  The namespaces, the bridge and every process are removed even on failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, BIN, FIXTURES, REPO
from tests.deploy.netns import Fabric, Node, kill_group, unavailable_reason
from visionq.embedded_redis import server_command

REDIS_PORT = 6379
API_PORT = 8000
"""The defaults, on purpose: every node has its own network stack, so nothing collides
with the host or with another run."""
REDIS_PASSWORD = "netns-broker-secret"
"""Redis (valkey) in protected mode refuses non-loopback clients of a password-less
server: a broker other machines use needs ``requirepass``, as it should anyway."""
API_KEY = "netns-test-key"
"""The API binds a non-loopback address, so it runs with a key, as it should there."""
SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel",
          "VISIONQ_SOFT_TIME_LIMIT_S": "4", "VISIONQ_HARD_TIME_LIMIT_S": "6",
          "VISIONQ_VISIBILITY_TIMEOUT_S": "8"}
SLOW_WIDTH = 100
"""SleepyModel sleeps width/100 s: a 1 s job, held on the node that is killed in the middle
of it (``SLEEPY_HOLD``), so that it is still running however slow the client is."""
HELD = {**SLEEPY, "SLEEPY_HOLD": "1", "VISIONQ_SOFT_TIME_LIMIT_S": "300",
        "VISIONQ_HARD_TIME_LIMIT_S": "310", "VISIONQ_VISIBILITY_TIMEOUT_S": "320"}
"""The doomed node: its held job must not hit a time limit before the node is killed (the
survivor's 8 s visibility timeout brings the message back)."""
LOGS = ARTIFACTS / "netns"
WAIT_S = 120
"""Bound of each wait (the client's included); every one returns as soon as it is met."""
WAIT = str(WAIT_S)


def clean_env(**extra: str) -> dict[str, str]:
    """The host's environment without any visionq/Redis setting: a node knows only what
    it is given here."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VISIONQ_") and k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"PYTHONUNBUFFERED": "1", "C_FORCE_ROOT": "1"})  # root in this sandbox
    env.update(extra)
    return env


@pytest.fixture()
def fabric() -> Iterator[Fabric]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"multi-node test needs network namespaces: {reason}")
    fabric = Fabric(prefix=f"vq{os.getpid() % 100000}", log_dir=LOGS)
    try:
        fabric.open()
        yield fabric
    finally:
        fabric.close()


def client_call(fabric: Fabric, client: Node, *args: str, timeout_s: float = 180) -> object:
    """Run ``tests.deploy.nsclient`` inside the client namespace and parse its JSON."""
    result = fabric.run(client, [str(BIN / "python"), "-m", "tests.deploy.nsclient", *args],
                        clean_env(VISIONQ_API_KEY=API_KEY), REPO, timeout_s)
    assert result.returncode == 0, f"client {args[0]} failed: {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def log_tail(label: str, lines: int = 30) -> str:
    path = LOGS / f"{label}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() \
        else ""


def start_worker(fabric: Fabric, node: Node, name: str, redis_url: str,
                 **env: str) -> subprocess.Popen:
    command = [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "classify", "-c", "1",
               "-n", f"{name}@%h", "--loglevel", "INFO"]
    return fabric.spawn(node, f"worker-{name}", command, clean_env(REDIS_URL=redis_url, **env),
                        REPO)


def ran_on(label: str, job_id: str) -> bool:
    """Whether the worker logging to ``label`` finished the job (the runner logs every job it
    runs, claimed ones too; Celery logs only its own deliveries)."""
    text = (LOGS / f"{label}.log").read_text(errors="replace")
    return f"job {job_id} (classify) succeeded" in text


def wait_log(label: str, text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (LOGS / f"{label}.log").read_text(errors="replace"):
        assert process.poll() is None, f"{label} exited:\n{log_tail(label)}"
        assert time.monotonic() < deadline, f"{label}: no {text!r}:\n{log_tail(label)}"
        time.sleep(0.1)


def test_workers_on_other_nodes_need_only_redis_url_and_lose_nothing(
        fabric: Fabric, tmp_path: Path) -> None:
    broker = fabric.add_node("broker", 2)
    api = fabric.add_node("api", 3)
    node_a = fabric.add_node("worker-a", 11)
    node_b = fabric.add_node("worker-b", 12)
    client = fabric.add_node("client", 20)
    redis_url = f"redis://:{REDIS_PASSWORD}@{broker.address}:{REDIS_PORT}/0"
    api_url = f"http://{api.address}:{API_PORT}"

    redis_command = server_command(REDIS_PORT, tmp_path / "redis", host=broker.address)
    fabric.spawn(broker, "redis", [*redis_command, "--requirepass", REDIS_PASSWORD],
                 clean_env(), REPO)
    fabric.spawn(api, "api", [str(BIN / "gunicorn"), "--workers", "2", "--bind",
                              f"{api.address}:{API_PORT}", "api:create_app()"],
                 clean_env(REDIS_URL=redis_url, VISIONQ_API_KEYS=API_KEY), REPO)

    # 1. A worker node with the real classify model: results come back across the bridge.
    first = start_worker(fabric, node_a, "node-a", redis_url)
    client_call(fabric, client, "ready", api_url, "--workers", "1", "--timeout", WAIT)
    images = [FIXTURES / "classify" / "chelsea.png", FIXTURES / "classify" / "caffe_cat.jpg"]
    ids = [job_id for image in images for job_id in client_call(
        fabric, client, "submit", api_url, "classify", "--image", str(image))]
    jobs = client_call(fabric, client, "results", api_url, *ids, "--wait", WAIT)
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], jobs
    for job in jobs:
        assert ran_on("worker-node-a", job["id"]), job
        assert job["result"]["model"] == "efficientnet_lite0"
        assert job["result"]["predictions"][0]["class_id"] in (281, 282, 285), job["result"]
    kill_group(first, signal.SIGTERM)  # warm shutdown: the node leaves cleanly
    assert first.wait(WAIT_S) == 0, log_tail("worker-node-a")

    # 2. The node dies mid-job; a second node joins; nothing is lost.
    doomed = start_worker(fabric, node_a, "node-a2", redis_url, **HELD)
    wait_log("worker-node-a2", "ready.", doomed, WAIT_S)
    [slow] = client_call(fabric, client, "submit", api_url, "classify",
                         "--width", str(SLOW_WIDTH))
    quick = client_call(fabric, client, "submit", api_url, "classify", "--width", "20",
                        "--count", "3")
    running = client_call(fabric, client, "await", api_url, slow, "--status",
                          "running,succeeded,failed", "--timeout", WAIT)
    assert running["status"] == "running", running
    kill_group(doomed, signal.SIGKILL)  # the whole node: main process and pool child
    doomed.wait(WAIT_S)
    survivor = start_worker(fabric, node_b, "node-b", redis_url, **SLEEPY)
    jobs = client_call(fabric, client, "results", api_url, slow, *quick, "--wait", WAIT)
    assert [j["status"] for j in jobs] == ["succeeded"] * 4, jobs
    assert f"visionq.classify[{slow}] received" in log_tail("worker-node-a2", 1000)
    assert not any(ran_on("worker-node-a2", j["id"]) for j in jobs)
    assert all(ran_on("worker-node-b", j["id"]) for j in jobs), log_tail("worker-node-b")
    # SleepyModel reports its process: a pool child of the survivor (no pid namespaces, so
    # the pid is the host's).
    survivor_children = subprocess.run(["pgrep", "-P", str(survivor.pid)], capture_output=True,
                                       text=True).stdout.split()
    assert str(jobs[0]["result"]["pid"]) in survivor_children
    assert jobs[0]["attempts"] == 2, jobs[0]  # began on node-a2, redelivered to node-b
    assert jobs[0]["result"]["width"] == SLOW_WIDTH
    assert [j["attempts"] for j in jobs[1:]] == [1, 1, 1], jobs[1:]


def test_nodes_are_isolated_from_the_host(fabric: Fabric) -> None:
    """The addresses exist only inside our namespaces (none on the host's links), nodes
    reach each other over the bridge, and each node has its own loopback up."""
    node = fabric.add_node("lonely", 30)
    other = fabric.add_node("peer", 31)
    host_links = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert node.address not in host_links and other.address not in host_links
    # Across the bridge: nothing listens on the peer's port 9, so a reachable peer answers
    # with a reset (ConnectionRefusedError) at once; an unreachable one would time out.
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], 9), 3)\n"
             "except ConnectionRefusedError:\n print('refused')\n")
    reach = fabric.run(node, [str(BIN / "python"), "-c", probe, other.address], clean_env(),
                       REPO, 10)
    assert reach.stdout.strip() == "refused", reach.stdout + reach.stderr
    links = fabric.run(node, ["ip", "-o", "addr"], clean_env(), REPO, 10).stdout
    assert f"{node.address}/24" in links and "127.0.0.1/8" in links
