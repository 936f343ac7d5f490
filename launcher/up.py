"""``visionq up``: run the whole pipeline on one machine and stop it cleanly on Ctrl-C.

Starts the embedded Redis (unless ``REDIS_URL`` points elsewhere), the API under
gunicorn, one Celery worker per queue and Flower; prefixes every line of their output
with the process name; prints the URLs once the API answers.  Every child is supervised
(``launcher.supervisor``): one that exits unexpectedly is restarted with backoff, and given up
after repeated fast failures; one that stops answering its liveness check
(``launcher.liveness``) is killed and restarted the same way; restarts and give-ups are
recorded in Redis for ``/readyz`` and the exporter.  The children die with ``visionq up``
however it ends (``PR_SET_PDEATHSIG``), and what a previous run left is killed at start
(``launcher.children``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from launcher.children import AnotherUp, ChildrenFile, die_with_parent, port_holder
from launcher.liveness import (
    Liveness,
    Probe,
    heartbeat_probe,
    http_probe,
    probe_timeout,
    redis_probe,
)
from launcher.supervisor import RestartPolicy, Snapshot, Supervisor, kill_group
from monitoring.metrics import clean_multiprocess_dir
from monitoring.settings import PROMETHEUS_PORT, get_monitoring_settings
from visionq.custom_models import custom_queue_if_models
from visionq.embedded_redis import server_command, wait_ready
from visionq.keys import SUPERVISOR_GAVE_UP_KEY, SUPERVISOR_RESTARTS_KEY
from visionq.mqtt.settings import mqtt_enabled
from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, Settings, is_loopback
from visionq.shards import redact, shard_map

PROMETHEUS_CONFIG = Path(__file__).resolve().parents[1] / "monitoring" / "prometheus.yml"
STOP_TIMEOUT_S = 30.0
"""Warm shutdown: workers finish in-flight jobs; after this they are killed."""
SUPERVISE_INTERVAL_S = 0.5
"""How often the children are polled: a dead one is noticed within this."""
CHILDREN_FILE = "up-children.json"
"""In the state directory: the children's PIDs, for the next start's sweep."""


@dataclass
class Service:
    name: str
    command: list[str]
    critical: bool = True
    """The stack cannot run without it: if it is given up, ``visionq up`` stops."""
    ready_critical: bool = False
    """``/readyz`` answers 503 while it is given up (critical ones always do)."""
    env: dict[str, str] = field(default_factory=dict)
    """Added to the stack's environment for this service only."""
    process: subprocess.Popen | None = field(default=None, repr=False)


def _pump(name: str, stream: object, out: object) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        out.write(f"[{name}] {line}")  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]


@dataclass
class Stack:
    settings: Settings
    queues: list[str]
    api_workers: int = 2
    api_threads: int = 16
    worker_concurrency: int = 1
    flower: bool = True
    prometheus: bool = True
    embedded_redis_port: int | None = None
    services: list[Service] = field(default_factory=list)
    out: object = sys.stdout
    supervisor: Supervisor | None = field(default=None, repr=False)
    liveness: Liveness | None = field(default=None, repr=False)
    children_file: ChildrenFile | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REDIS_URL"] = self.settings.redis_url
        env.setdefault("C_FORCE_ROOT", "1")  # Celery refuses root without it (containers)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def metrics_dirs(self) -> dict[str, Path]:
        """prometheus_client multiprocess directories: one for the API's gunicorn workers,
        one for every Celery process (read by the exporter), so nothing is exported twice."""
        base = Path(self.settings.state_dir).resolve() / "metrics"
        return {"api": base / "api", "workers": base / "workers"}

    def plan(self) -> list[Service]:
        python = sys.executable
        state = self.settings.state_dir
        services: list[Service] = []
        dirs = self.metrics_dirs()
        for directory in dirs.values():
            clean_multiprocess_dir(directory)  # counters restart with the stack
        api_env = {"PROMETHEUS_MULTIPROC_DIR": str(dirs["api"]),
                   "VISIONQ_API_HOST": self.settings.api_host}  # --host: the API warns too
        workers_env = {"PROMETHEUS_MULTIPROC_DIR": str(dirs["workers"])}
        if self.embedded_redis_port is not None:
            services.append(Service("redis", server_command(
                self.embedded_redis_port, state / "redis")))
        services.append(Service("api", [
            # Threads: a long-poll (?wait=) or a DeepStack call waits on its job; with sync
            # workers each would hold a whole process (bench: 0 completions under overload).
            python, "-m", "gunicorn", "--workers", str(self.api_workers),
            "--threads", str(self.api_threads), "--bind",
            f"{self.settings.api_host}:{self.settings.api_port}",
            "--graceful-timeout", "20", "api:create_app()"], env=api_env))
        shards = shard_map(self.settings)
        for queue in [*self.queues, *custom_queue_if_models(self.settings.models_dir)]:
            # A queue with a Redis of its own (VISIONQ_REDIS_URL_<QUEUE>, passed through in
            # env()) is consumed from there: celery's -b, as an environment variable.
            broker = shards.url_for(queue)
            services.append(Service(f"worker-{queue}", [
                python, "-m", "celery", "-A", "tasks", "worker", "-Q", queue,
                "-c", str(self.worker_concurrency), "-n", f"{queue}@%h", "--loglevel", "INFO"],
                critical=False, ready_critical=True,
                env={**workers_env, **({"CELERY_BROKER_URL": broker}
                                       if broker != shards.main else {})}))
        services.append(Service("exporter", [
            python, "-m", "monitoring.exporter", "--queues", ",".join(self.queues)],
            critical=False, env=workers_env))
        # Webhooks (a job's callback_url, VISIONQ_CALLBACK_URL): sent off every worker's path,
        # from the finished-jobs stream (visionq.callbacks.sender).
        services.append(Service("callbacks", [python, "-m", "visionq.callbacks"],
                                critical=False))
        if mqtt_enabled():  # VISIONQ_MQTT_URL: results and Home Assistant discovery over MQTT
            services.append(Service("mqtt", [python, "-m", "visionq.mqtt", "--queues",
                                             ",".join(self.queues)], critical=False))
        if self.flower and importlib.util.find_spec("flower") is not None:
            # The credentials go in Flower's environment (FLOWER_BASIC_AUTH is its
            # --basic-auth), not its argv: argv shows in `ps` and in the start-up line above.
            auth = self.settings.flower_basic_auth
            services.append(Service("flower", [
                python, "-m", "celery", "-A", "tasks", "flower",
                f"--port={self.settings.flower_port}",
                f"--address={self.flower_host()}"], critical=False,
                env={"FLOWER_BASIC_AUTH": auth} if auth else {}))
        prometheus = shutil.which("prometheus")
        if self.prometheus and prometheus:
            services.append(Service("prometheus", [
                prometheus, f"--config.file={PROMETHEUS_CONFIG}",
                f"--storage.tsdb.path={Path(state).resolve() / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"], critical=False))
        return services

    def flower_host(self) -> str:
        """Flower can revoke tasks and stop workers: it follows the API off loopback only
        with basic auth (``VISIONQ_FLOWER_BASIC_AUTH``), else it stays on loopback."""
        host = self.settings.api_host
        if is_loopback(host) or self.settings.flower_basic_auth:
            return host
        return "127.0.0.1"

    def ports(self) -> list[tuple[str, int, bool, str]]:
        """(what, port, critical, how to move it) of every port the planned services bind."""
        names = {s.name for s in self.services}
        found = []
        if self.embedded_redis_port is not None:
            found.append(("the embedded Redis", self.embedded_redis_port, True,
                          "VISIONQ_REDIS_PORT"))
        found.append(("the API", self.settings.api_port, True, "--port or VISIONQ_API_PORT"))
        if "flower" in names:
            found.append(("Flower", self.settings.flower_port, False, "VISIONQ_FLOWER_PORT"))
        if "exporter" in names:
            found.append(("the exporter", get_monitoring_settings().exporter_port, False,
                          "VISIONQ_EXPORTER_PORT"))
        if "prometheus" in names:
            found.append(("Prometheus", PROMETHEUS_PORT, False, "--no-prometheus"))
        return found

    def ports_free(self) -> bool:
        """Name whoever holds a port the stack needs; False if Redis's or the API's is held
        (the stack cannot run), True if only an optional role's is (it will be given up)."""
        blocked = False
        for what, port, critical, move in self.ports():
            holder = port_holder(port)
            if holder is None:
                continue
            self.say(f"port {port} ({what}) is in use by {holder}: stop it, or choose another "
                     f"port ({move})" + ("" if critical else f"; starting without {what}"))
            blocked = blocked or critical
        return not blocked

    def probes(self) -> dict[str, Probe]:
        """The liveness check of each role that has one: Redis, the API, every worker."""
        timeout = probe_timeout(self.settings.liveness_timeout_s)
        probes: dict[str, Probe] = {}
        if self.embedded_redis_port is not None:
            probes["redis"] = redis_probe(self.settings.redis_url, timeout)
        probes["api"] = http_probe(f"{self.api_base()}/healthz", timeout)
        for service in self.services:
            if service.name.startswith("worker-"):
                probes[service.name] = heartbeat_probe(
                    self.settings.redis_url, service.name.removeprefix("worker-"), timeout)
        return probes

    def api_base(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def hung(self, service: Service) -> str | None:
        """Why ``service``'s running process counts as hung (``Liveness``), or None."""
        if self.liveness is None or service.process is None:
            return None
        return self.liveness.hung(service.name, service.process.pid)

    def start(self, service: Service) -> None:
        """Start ``service`` in a session of its own, to be killed by the kernel if this
        process dies (``die_with_parent``); called from the main thread only, as that signal
        follows the thread that forked.  Its PID goes to the children file."""
        service.process = subprocess.Popen(  # noqa: S603 - the stack's own argv lists, no shell
            service.command, env={**self.env(), **service.env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
            preexec_fn=die_with_parent())  # noqa: PLW1509 - prctl only, no locks taken
        if self.children_file is not None:
            self.children_file.record(service.name, service.process.pid)
        if self.liveness is not None:
            self.liveness.started(service.name, service.process.pid)
        threading.Thread(target=_pump, args=(service.name, service.process.stdout, self.out),
                         daemon=True).start()

    def say(self, message: str) -> None:
        self.out.write(f"visionq: {message}\n")  # type: ignore[attr-defined]
        self.out.flush()  # type: ignore[attr-defined]

    def policy(self) -> RestartPolicy:
        s = self.settings
        return RestartPolicy(backoff_initial_s=s.supervisor_backoff_initial_s,
                             backoff_max_s=max(s.supervisor_backoff_max_s,
                                               s.supervisor_backoff_initial_s),
                             give_up_after=s.supervisor_give_up_after,
                             window_s=s.supervisor_window_s)

    def record(self, snapshot: Snapshot) -> bool:
        """Restart counts and given-up roles into Redis (``visionq.keys``); False while
        Redis does not answer (the supervisor offers the snapshot again)."""
        conn = redis_client(self.settings.redis_url)
        try:
            pipe = conn.pipeline(transaction=True)
            pipe.delete(SUPERVISOR_RESTARTS_KEY, SUPERVISOR_GAVE_UP_KEY)
            if snapshot.restarts:
                pipe.hset(SUPERVISOR_RESTARTS_KEY, mapping=snapshot.restarts)
            if snapshot.gave_up:
                pipe.hset(SUPERVISOR_GAVE_UP_KEY, mapping={
                    role: json.dumps({"reason": g.reason, "critical": g.ready_critical})
                    for role, g in snapshot.gave_up.items()})
            pipe.execute()
        except redis.RedisError:
            return False
        return True

    def supervise(self) -> None:
        """One supervision pass (see ``launcher.supervisor``)."""
        if self.supervisor is not None:
            self.supervisor.poll()

    def run(self, ready_timeout_s: float = 120.0) -> int:
        self.children_file = ChildrenFile(Path(self.settings.state_dir) / CHILDREN_FILE)
        try:
            self.children_file.sweep(self.say)
        except AnotherUp as exc:
            self.say(str(exc))
            return 1
        self.services = self.plan()
        if not self.ports_free():
            return 1
        stopping = threading.Event()
        self.liveness = Liveness(self.probes(), self.settings.liveness_timeout_s)
        self.supervisor = Supervisor(self.services, self.start, self.say,  # type: ignore[arg-type]
                                     self.record, self.policy(), time.monotonic,
                                     hung=self.hung)  # type: ignore[arg-type]

        def _stop(signum: int, _frame: object) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            for service in self.services:
                self.say(f"starting {service.name}: {' '.join(service.command)}")
                self.start(service)
                self.supervisor.started(service)
                if service.name == "redis":
                    wait_ready(self.settings.redis_url, 15, service.process)
            if not self._wait_api(ready_timeout_s, stopping):
                return 1
            self._banner()
            return self._watch(stopping)
        finally:
            self.stop()

    def _wait_api(self, timeout_s: float, stopping: threading.Event) -> bool:
        """Until the API says Redis answers and every queue has a worker (or its worker was
        given up: the stack runs without it and ``/readyz`` says so).  Children are
        supervised meanwhile; False if Redis or the API is given up."""
        base = self.api_base()
        deadline = time.monotonic() + timeout_s
        supervisor = self.supervisor
        while not stopping.is_set() and time.monotonic() < deadline:
            self.supervise()
            if supervisor is not None and supervisor.fatal():
                return False
            try:
                detail = requests.get(f"{base}/readyz", timeout=2).json()
                online = detail.get("workers", {})
                missing = [q for q in self.queues if not online.get(q)]
                if detail.get("redis") == "ok" and not missing:
                    return True
                if supervisor is not None and detail.get("redis") == "ok" and all(
                        supervisor.gave_up(f"worker-{q}") for q in missing):
                    return True
            except (requests.RequestException, ValueError):
                pass
            time.sleep(SUPERVISE_INTERVAL_S)
        if not stopping.is_set():
            self.say(f"the stack did not become ready within {timeout_s:g} s")
        return False

    def _banner(self) -> None:
        host, port = self.settings.api_host, self.settings.api_port
        lines = [
            "visionq is up:",
            f"  API         http://{host}:{port}/v1/jobs   (health: /healthz, /readyz)",
            f"  Redis       {redact(self.settings.redis_url)}",
        ]
        shards = shard_map(self.settings)
        for url in shards.urls[1:]:
            queues = ", ".join(shards.queues_on(url))
            lines.append(f"  Redis       {redact(url)}  (queues: {queues})")
        if any(s.name == "flower" for s in self.services):
            flower = self.flower_host()
            note = ""
            if flower != host:
                note = "  (loopback only: set VISIONQ_FLOWER_BASIC_AUTH=user:password to expose)"
            elif self.settings.flower_basic_auth:
                note = "  (basic auth)"
            lines.append(f"  Flower      http://{flower}:{self.settings.flower_port}/{note}")
        lines.append(f"  Metrics     http://{host}:{port}/metrics (API), "
                     f"http://127.0.0.1:{get_monitoring_settings().exporter_port}/metrics "
                     "(workers, queues)")
        if any(s.name == "prometheus" for s in self.services):
            lines.append(f"  Prometheus  http://127.0.0.1:{PROMETHEUS_PORT}/  "
                         "(alerts: monitoring/alerts.yml)")
        else:
            lines.append("  Prometheus  not installed: `apt-get install prometheus`, then "
                         f"`prometheus --config.file={PROMETHEUS_CONFIG}`")
        lines += [
            f"  try:        curl -F image=@photo.jpg 'http://{host}:{port}/v1/jobs?task=face'",
            "  Ctrl-C stops everything (workers finish their in-flight jobs first).",
        ]
        for line in lines:
            self.say(line)

    def _watch(self, stopping: threading.Event) -> int:
        while not stopping.wait(SUPERVISE_INTERVAL_S):
            self.supervise()
            fatal = self.supervisor.fatal() if self.supervisor is not None else []
            if fatal:
                self.say(f"{', '.join(g.role for g in fatal)} given up; stopping")
                return 1
        self.say("stopping (warm shutdown)...")
        return 0

    def stop(self) -> None:
        """SIGTERM to each child's main process, newest first, then SIGKILL to what is left
        of its process group.  Only the main process: Celery's main process answers SIGTERM
        with a warm shutdown (its pool finishes the job in hand), while a SIGTERM to the
        whole group would reach the pool children and kill that job mid-way."""
        if self.liveness is not None:
            self.liveness.stop()
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.say(f"{service.name} did not stop within {STOP_TIMEOUT_S:g} s; killing")
            kill_group(process.pid)
            process.wait()
        if self.children_file is not None:
            self.children_file.remove()
        self.say("stopped")


def bind_refusal(settings: Settings, insecure: bool) -> str | None:
    """Why the API must not bind where asked, or None: a non-loopback address without API
    keys would expose an open API (and face registry) to the network."""
    if is_loopback(settings.api_host) or insecure:
        return None
    if settings.api_key_list or settings.admin_key_list:
        return None
    return (f"refusing to bind the API to {settings.api_host} without API keys: set "
            "VISIONQ_API_KEYS (and VISIONQ_ADMIN_KEYS), or pass --insecure")


def make_stack(settings: Settings, queues: list[str] | None = None,
               redis_external: bool | None = None, **kwargs: object) -> Stack:
    """Use the embedded Redis unless ``settings.redis_url`` was given explicitly
    (``REDIS_URL``/``VISIONQ_REDIS_URL`` set and not empty, or passed to ``Settings``)."""
    if redis_external is None:
        redis_external = "redis_url" in settings.model_fields_set and bool(settings.redis_url)
    port = None
    if not redis_external:
        port = settings.redis_port
        settings.redis_url = f"redis://127.0.0.1:{port}/0"
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    return Stack(settings=settings, queues=list(queues or QUEUES), embedded_redis_port=port,
                 **kwargs)  # type: ignore[arg-type]
