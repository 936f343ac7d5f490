"""Redis Sentinel end to end: a primary, a replica and three sentinels (the embedded valkey
binary, ``--sentinel``), the API and a worker given ``REDIS_URL=sentinel://…;sentinel://…``.
The primary is SIGKILLed while jobs are being submitted; after the failover every job the
API accepted (202) finishes, and none finishes twice."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import ARTIFACTS, BIN, log_tail, service_env, spawn, start_api, stop_process
from tests.helpers import free_port
from tests.workers.sleepy_model import image_bytes
from visionq.embedded_redis import server_binary, wait_ready
from visionq.keys import HISTORY_STREAM_KEY, WORKER_KEY_PREFIX
from visionq.redis_conn import parse_sentinel_url

MASTER = "vqmaster"
SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel",
          "VISIONQ_REDIS_SENTINEL_MASTER": MASTER,
          # The history stream keeps every finish (one entry each) for the "none twice" count.
          "VISIONQ_HISTORY_WRITER": "0",
          # A message delivered just as the primary died comes back through kombu's
          # visibility timeout (its unacked record was replicated): 20 s, not the default.
          "VISIONQ_SOFT_TIME_LIMIT_S": "5", "VISIONQ_HARD_TIME_LIMIT_S": "10",
          "VISIONQ_VISIBILITY_TIMEOUT_S": "20"}
DEADLINE_S = 300


def _server(name: str, args: list[str]) -> subprocess.Popen:
    log = open(ARTIFACTS / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen([str(server_binary()), *args], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return process


class SentinelSet:
    """Primary + replica + three sentinels on loopback ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def start(self) -> None:
        base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--protected-mode", "no"]
        self.processes["primary"] = _server(
            "sentinel-primary", ["--port", str(self.primary_port), *base])
        wait_ready(f"redis://127.0.0.1:{self.primary_port}/0", 15, self.processes["primary"])
        self.processes["replica"] = _server(
            "sentinel-replica", ["--port", str(self.replica_port), *base,
                                 "--replicaof", "127.0.0.1", str(self.primary_port)])
        wait_ready(f"redis://127.0.0.1:{self.replica_port}/0", 15, self.processes["replica"])
        for index, port in enumerate(self.sentinel_ports):
            config = self.tmp / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"dir {self.tmp}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n")
            self.processes[f"sentinel-{index}"] = _server(
                f"sentinel-{index}", [str(config), "--sentinel"])
        self.wait(lambda: self._replica_linked() and self._sentinels_agree(
            self.primary_port), "replica linked and every sentinel watching the primary")

    def _replica_linked(self) -> bool:
        info = redis.Redis(port=self.replica_port).info("replication")
        return info.get("master_link_status") == "up"

    def master_port(self, sentinel_port: int) -> int | None:
        try:
            reply = redis.Redis(port=sentinel_port, socket_timeout=2).execute_command(
                "SENTINEL", "get-master-addr-by-name", MASTER)
        except redis.RedisError:
            return None
        return int(reply[1]) if reply else None

    def _sentinels_agree(self, port: int) -> bool:
        if any(self.master_port(s) != port for s in self.sentinel_ports):
            return False
        # Each sentinel must also know the replica and its peers, or it cannot fail over.
        client = redis.Redis(port=self.sentinel_ports[0], socket_timeout=2)
        master = client.execute_command("SENTINEL", "master", MASTER)
        fields = dict(zip(master[::2], master[1::2], strict=False))
        return (int(fields.get(b"num-slaves", 0)) >= 1
                and int(fields.get(b"num-other-sentinels", 0)) >= 2)

    def wait(self, condition, what: str, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not condition():
            for name, process in self.processes.items():
                if name != "primary" and process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout_s:g} s: {what}")
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)


@pytest.fixture()
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    cluster = SentinelSet(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_sentinel_url_is_understood() -> None:
    target = parse_sentinel_url("sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380")
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert target.db == 2 and target.password == "pw"
    with pytest.raises(ValueError):
        parse_sentinel_url("redis://10.0.0.1:6379/0")


def test_primary_killed_under_load_loses_no_accepted_job(sentinels: SentinelSet) -> None:
    env = {**SLEEPY}
    worker = spawn("worker-sentinel", [
        str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "classify", "-c", "2", "-n",
        "sentinel@testhost", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        service_env(sentinels.url, **env))
    api, api_process = start_api(sentinels.url, "api-sentinel", **env)
    primary = redis.Redis(port=sentinels.primary_port)
    try:
        def worker_ready() -> bool:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited:\n{log_tail('worker-sentinel')}")
            return bool(primary.exists(f"{WORKER_KEY_PREFIX}sentinel@testhost"))

        sentinels.wait(worker_ready, "worker ready", timeout_s=180)
        accepted: list[str] = []
        refused: list[tuple[int, str, str | None]] = []
        stop = threading.Event()

        def submit() -> None:
            image = image_bytes(20)  # SleepyModel: quick
            while not stop.is_set():
                try:
                    response = requests.post(f"{api}/v1/jobs?task=classify",
                                             files={"image": ("i.png", image)}, timeout=30)
                except requests.RequestException as exc:
                    refused.append((0, repr(exc), None))
                    continue
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                else:
                    json_body = response.headers["Content-Type"].startswith("application/json")
                    refused.append((response.status_code,
                                    response.json().get("code") if json_body else response.text,
                                    response.headers.get("Retry-After")))
                    time.sleep(0.1)

        submitter = threading.Thread(target=submit, daemon=True)
        submitter.start()
        sentinels.wait(lambda: len(accepted) >= 20, "20 jobs accepted before the kill")
        sentinels.processes["primary"].send_signal(signal.SIGKILL)
        killed_at = len(accepted)
        sentinels.wait(lambda: all(sentinels.master_port(p) == sentinels.replica_port
                                   for p in sentinels.sentinel_ports),
                       "the sentinels promoted the replica", timeout_s=90)
        sentinels.wait(lambda: len(accepted) >= killed_at + 20,
                       f"20 more jobs accepted after the failover (refused: {refused[-5:]})",
                       timeout_s=120)
        stop.set()
        submitter.join(60)
        # While there is no primary: 503 redis_unavailable with Retry-After, as for a restart.
        assert all(status == 503 and code == "redis_unavailable" and retry
                   for status, code, retry in refused), refused

        deadline = time.monotonic() + DEADLINE_S
        final: dict[str, dict] = {}
        while len(final) < len(accepted) and time.monotonic() < deadline:
            # kombu 5.7's Sentinel channel used to kill the worker here (tasks/sentinel.py).
            assert worker.poll() is None, f"the worker died:\n{log_tail('worker-sentinel')}"
            for job_id in accepted:
                if job_id in final:
                    continue
                job = requests.get(f"{api}/v1/jobs/{job_id}?wait=5", timeout=30).json()
                if job.get("status") in ("succeeded", "failed"):
                    final[job_id] = job
        missing = [job_id for job_id in accepted if job_id not in final]
        assert not missing, f"{len(missing)} of {len(accepted)} accepted jobs never finished"
        failed = {j["id"]: j.get("code") for j in final.values() if j["status"] != "succeeded"}
        assert not failed, failed

        # None twice: the history stream gets one entry per finish, and a second finish of
        # a final job is refused by the finish script.
        new_primary = redis.Redis(port=sentinels.replica_port)
        counts: dict[str, int] = {}
        for _, fields in new_primary.xrange(HISTORY_STREAM_KEY):
            job_id = (fields.get(b"id") or b"").decode()
            counts[job_id] = counts.get(job_id, 0) + 1
        twice = {job_id: n for job_id, n in counts.items() if job_id in final and n > 1}
        assert not twice, twice
        assert worker.poll() is None, log_tail("worker-sentinel")
    finally:
        stop_process(api_process)
        stop_process(worker)
