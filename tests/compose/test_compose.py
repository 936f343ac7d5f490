"""compose/: the Docker Compose file, its Dockerfile, .env.example and the Kubernetes
examples, checked against the installed package without a Docker engine.

- ``docker compose config`` (or the standalone ``docker-compose``) validates the file when
  a client is installed; skipped with what ``docker compose version`` said otherwise.
- Every command of a visionq service is run against the installed package: Celery
  commands with ``--help`` (Click rejects unknown options even then), gunicorn with
  ``--check-config`` (imports ``api:create_app()``), the exporter and the autoscaler for
  real against the test Redis.
- Every environment variable is a documented setting, every ``${VAR}`` is in
  .env.example, every mounted or copied file exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from monitoring.settings import MonitoringSettings
from tests.conftest import BIN, REPO, free_port, log_tail, service_env, spawn, stop_process
from visionq.settings import QUEUES, Settings

COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
K8S = COMPOSE_DIR / "k8s"
THIRD_PARTY_ENV = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client's multiprocess mode (monitoring/metrics.py)",
}
"""Variables that belong to a library visionq uses, not to visionq's settings."""
FORBIDDEN_IN_FACE_IMAGE = ("ai-edge-litert", "tensorflow", "tflite-runtime")
"""The face image runs dlib and YuNet (onnxruntime, onnx for its install step): nothing
else's runtime."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# -- reading the files --------------------------------------------------------------


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            return current if current not in (None, "") or op == "-" and current is not None \
                else arg
        if op in (":?", "?") and not current:
            raise AssertionError(f"${{{name}}} required: {arg}")
        return current or ""

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def compose_variables() -> set[str]:
    return {m.group(1) for m in _VAR.finditer(COMPOSE_FILE.read_text().replace("$$", ""))}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env_example())


def our_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the visionq image (built from compose/Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items()
            if str(svc.get("image", "")).startswith("visionq")}


def documented_env() -> set[str]:
    names = {"REDIS_URL"}
    for model in (Settings, MonitoringSettings):
        names |= {f"VISIONQ_{field.upper()}" for field in model.model_fields}
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        names |= set(re.findall(r"`(VISIONQ_[A-Z0-9_]+)`", page.read_text()))
    return names | set(THIRD_PARTY_ENV)


# -- docker compose config ----------------------------------------------------------


def compose_client() -> tuple[list[str] | None, str]:
    """The compose command line here, or None and why not."""
    said = "no `docker` client"
    if shutil.which("docker"):
        result = subprocess.run(["docker", "compose", "version"], capture_output=True,
                                text=True, timeout=30)
        if result.returncode == 0:
            return ["docker", "compose"], result.stdout.strip()
        said = f"`docker compose version` said: {(result.stderr or result.stdout).strip()}"
    if shutil.which("docker-compose"):
        result = subprocess.run(["docker-compose", "version", "--short"], capture_output=True,
                                text=True, timeout=30)
        if result.returncode == 0:
            return ["docker-compose"], f"docker-compose {result.stdout.strip()}"
    return None, said


def run_compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    command, why = compose_client()
    if command is None:
        pytest.skip(f"compose file not validated by Docker: {why} (and no docker-compose); "
                    "install the compose plugin to run this check")
    env = {k: v for k, v in os.environ.items() if k not in env_example()}
    return subprocess.run([*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
                           "config", "-q"], capture_output=True, text=True, timeout=60,
                          cwd=COMPOSE_DIR, env=env)


def test_docker_compose_config_validates_the_file() -> None:
    result = run_compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_a_missing_redis_password(tmp_path: Path) -> None:
    partial = tmp_path / "partial.env"
    partial.write_text("\n".join(f"{k}={v}" for k, v in env_example().items()
                                 if k != "REDIS_PASSWORD"))
    result = run_compose_config(partial)
    assert result.returncode != 0 and "REDIS_PASSWORD" in result.stderr + result.stdout


# -- services -----------------------------------------------------------------------


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("redis", "api", "flower", "exporter", "autoscaler", "prometheus", "grafana",
                 *(f"worker-{q}" for q in QUEUES)):
        assert name in services, f"no {name} service"
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in services["redis"]["volumes"])
    assert services["redis"]["volumes"][0].split(":")[0] in compose["volumes"]


def celery_help(argv: list[str]) -> tuple[int, str]:
    """``celery <args> --help`` run in this process through Celery's own Click command
    (one import of ``tasks`` for all checks instead of ~5 s per subprocess): Click parses
    every option first, so an unknown option or subcommand still fails with exit code 2."""
    from celery.bin.celery import celery
    from click.testing import CliRunner

    assert argv[0] == "celery", argv
    result = CliRunner().invoke(celery, [*argv[1:], "--help"])
    return result.exit_code, result.output


def test_celery_help_check_rejects_a_bad_invocation() -> None:
    assert celery_help(["celery", "-A", "tasks", "worker", "-Q", "face", "--bogus"])[0] == 2
    assert celery_help(["celery", "-A", "tasks", "wokrer"])[0] == 2


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_service_runs_one_queue_with_its_own_extra(compose: dict[str, Any],
                                                          queue: str) -> None:
    service = compose["services"][f"worker-{queue}"]
    command = service["command"]
    assert command[:4] == ["celery", "-A", "tasks", "worker"]
    assert command[command.index("-Q") + 1] == queue
    name = command[command.index("-n") + 1]
    assert name == f"{queue}@%h"
    assert service["build"]["args"]["EXTRAS"] == queue, "each worker image carries one extra"
    code, output = celery_help(command)
    assert code == 0, output
    probe = service["healthcheck"]["test"]
    assert probe[0] == "CMD-SHELL"
    argv = probe[1].split()
    assert argv[:5] == ["celery", "-A", "tasks", "inspect", "ping"]
    assert argv[argv.index("-d") + 1] == f"{queue}@$HOSTNAME", "ping the worker's own name"
    code, output = celery_help(argv)
    assert code == 0, output
    assert service["stop_grace_period"].rstrip("s").isdigit()
    assert int(service["stop_grace_period"].rstrip("s")) > Settings().hard_time_limit_s


def test_flower_command_is_valid(compose: dict[str, Any]) -> None:
    service = compose["services"]["flower"]
    assert service["command"][:4] == ["celery", "-A", "tasks", "flower"]
    assert service["build"]["args"]["EXTRAS"] == "flower"
    code, output = celery_help(service["command"])
    assert code == 0, output
    assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "Flower has no auth"


def test_api_command_loads_the_app_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    service = compose["services"]["api"]
    command = service["command"]
    assert command[0] == "gunicorn" and command[-1] == "api:create_app()"
    result = subprocess.run([str(BIN / "gunicorn"), "--check-config", *command[1:]],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env=service_env(service["environment"]["REDIS_URL"]))
    assert result.returncode == 0, result.stdout + result.stderr
    probe = service["healthcheck"]["test"]
    assert "/healthz" in " ".join(probe)
    assert probe[:3] == ["CMD", "python", "-c"]  # the slim image has no curl
    assert service["build"]["args"]["EXTRAS"] == ""
    assert "PROMETHEUS_MULTIPROC_DIR" in service["environment"]
    assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] in service["tmpfs"]


def test_exporter_command_serves_metrics(compose: dict[str, Any], redis_url: str) -> None:
    command = list(compose["services"]["exporter"]["command"])
    assert command[:3] == ["python", "-m", "monitoring.exporter"]
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"  # tests stay on loopback
    command[command.index("--port") + 1] = str(port)
    process = spawn("compose-exporter", [str(BIN / "python"), *command[1:]],
                    service_env(redis_url))
    try:
        deadline = time.monotonic() + 120  # returns as soon as the exporter answers
        while True:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                break
            except requests.RequestException:
                assert process.poll() is None, log_tail("compose-exporter")
                assert time.monotonic() < deadline, log_tail("compose-exporter")
                time.sleep(0.2)
        assert "celery_queue_length" in body
    finally:
        stop_process(process)


def test_autoscaler_command_runs_a_dry_tick(compose: dict[str, Any], redis_url: str) -> None:
    service = compose["services"]["autoscaler"]
    command = service["command"]
    assert command[:2] == ["visionq", "autoscale"] and "--dry-run" in command
    assert service["network_mode"] == "service:prometheus", "Prometheus scrapes its loopback"
    # --once: one observe/decide tick against the test Redis, then exit.
    result = subprocess.run([str(BIN / "visionq"), *command[1:], "--once", "--log-level",
                             "DEBUG"], capture_output=True, text=True, timeout=60, cwd=REPO,
                            env=service_env(redis_url))
    assert result.returncode == 0, result.stderr
    assert "[dry-run]" in result.stderr, result.stderr


def test_callbacks_command_is_the_role_and_shares_the_apis_secret(
        compose: dict[str, Any]) -> None:
    service = compose["services"]["callbacks"]
    assert service["command"] == ["python", "-m", "visionq.callbacks"]
    result = subprocess.run([str(BIN / "python"), "-m", "visionq.callbacks", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    api = compose["services"]["api"]
    state = [v for v in api["volumes"] if v.endswith("/state")]
    assert state and state[0] in service["volumes"], "the API's secret file is not shared"
    for name in ("VISIONQ_SECRET_KEY", "VISIONQ_CALLBACK_SECRET", "VISIONQ_CALLBACK_ALLOW"):
        assert service["environment"][name] == api["environment"][name], name


def test_every_visionq_service_command_is_checked(compose: dict[str, Any]) -> None:
    checked = {"api", "flower", "exporter", "autoscaler", "callbacks",
               *(f"worker-{q}" for q in QUEUES)}
    assert set(our_services(compose)) == checked


# -- settings and variables -----------------------------------------------------------


def test_every_environment_variable_is_a_documented_setting(compose: dict[str, Any]) -> None:
    documented = documented_env()
    for name, service in our_services(compose).items():
        unknown = set(service.get("environment", {})) - documented
        assert not unknown, f"{name}: undocumented variables {sorted(unknown)}"
        # The values must also be accepted by visionq's settings (limits in order, types).
        env = {k: str(v) for k, v in service.get("environment", {}).items()
               if k.startswith("VISIONQ_") or k == "REDIS_URL"}
        Settings(**{k.removeprefix("VISIONQ_").lower(): v for k, v in env.items()
                    if k.startswith("VISIONQ_")}, redis_url=env["REDIS_URL"])


def test_dockerfile_environment_is_documented() -> None:
    text = DOCKERFILE.read_text()
    names = set(re.findall(r"\b(VISIONQ_[A-Z0-9_]+)=", text))
    assert "VISIONQ_MODELS_DIR" in names
    help_text = subprocess.run([str(BIN / "visionq"), "install-models", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    documented = documented_env() | set(re.findall(r"\$(VISIONQ_[A-Z0-9_]+)", help_text))
    assert names <= documented, sorted(names - documented)


def test_env_example_defines_exactly_the_variables_compose_reads() -> None:
    example, used = set(env_example()), compose_variables()
    assert used - example == set(), f"missing from .env.example: {sorted(used - example)}"
    assert example - used == set(), f"unused in docker-compose.yml: {sorted(example - used)}"


def test_interpolation_refuses_a_missing_password() -> None:
    env = env_example()
    del env["REDIS_PASSWORD"]
    with pytest.raises(AssertionError, match="REDIS_PASSWORD"):
        interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)


# -- files --------------------------------------------------------------------------


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    mounts = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
                mounts += 1
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        build = service.get("build")
        if build:
            assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert mounts >= 5


def test_dockerfile_copies_existing_paths_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.M)
    assert {"build", "runtime", "detect"} <= set(stages)
    runtime = text[text.index("AS runtime"):]
    assert "USER visionq" in runtime and "USER root" not in runtime
    assert "install-models" in text[text.index("AS detect-weights"):text.index("AS runtime")]
    assert "uv export --frozen" in text and "${EXTRAS}" in text


def test_grafana_and_prometheus_are_provisioned_from_monitoring(compose: dict[str, Any]) -> None:
    grafana = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    provider = yaml.safe_load(
        (REPO / "monitoring/grafana/provisioning/dashboards/visionq.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path] == "../monitoring/grafana/dashboards"
    datasource = yaml.safe_load((COMPOSE_DIR / "grafana/datasource.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    prometheus = {v.split(":")[1]: v.split(":")[0]
                  for v in compose["services"]["prometheus"]["volumes"]}
    assert prometheus["/etc/prometheus/alerts.yml"] == "../monitoring/alerts.yml"
    ours = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    upstream = yaml.safe_load((REPO / "monitoring/prometheus.yml").read_text())
    assert [j["job_name"] for j in ours["scrape_configs"]] == \
        [j["job_name"] for j in upstream["scrape_configs"]]
    assert ours["rule_files"] == upstream["rule_files"] == ["alerts.yml"]
    for job in ours["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host = target.split(":")[0]
            assert host in compose["services"] or host == "127.0.0.1", target


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make system-deps installs prometheus)")
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(REPO / "monitoring" / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def locked_requirements(extra: str) -> set[str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH: cannot export the locked requirements of an extra")
    result = subprocess.run([uv, "export", "--frozen", "--no-dev", "--no-emit-project",
                             "--no-hashes", "--extra", extra], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    names = set()
    for line in result.stdout.splitlines():
        if line and not line.startswith(("#", " ")) and "sys_platform == 'never'" not in line:
            names.add(re.split(r"[=<>; \[]", line, maxsplit=1)[0].lower())
    return names


def test_face_image_carries_no_litert_or_tensorflow() -> None:
    face = locked_requirements("face")
    assert "dlib-bin" in face and "face-recognition" in face
    assert "onnxruntime" in face  # YuNet (face_detector yunet)
    assert not face & set(FORBIDDEN_IN_FACE_IMAGE), sorted(face & set(FORBIDDEN_IN_FACE_IMAGE))
    assert "ai-edge-litert" in locked_requirements("classify")  # the check can see them
    assert "onnxruntime" in locked_requirements("detect")


# -- Kubernetes ---------------------------------------------------------------------


def k8s_by_kind() -> dict[str, list[dict[str, Any]]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def k8s_deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_by_kind()["Deployment"]}


def test_keda_scaledobject_scales_the_worker_on_its_queue_list() -> None:
    by_kind = k8s_by_kind()
    [scaled] = by_kind["ScaledObject"]
    assert scaled["apiVersion"].startswith("keda.sh/")
    deployment = k8s_deployments()[scaled["spec"]["scaleTargetRef"]["name"]]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    queue = command[command.index("-Q") + 1]
    assert queue in QUEUES
    assert trigger["metadata"]["listName"] == queue, "KEDA must watch the worker's own queue"
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = trigger["authenticationRef"]["name"]
    assert auth in [d["metadata"]["name"] for d in by_kind["TriggerAuthentication"]]
    code, output = celery_help([c.replace("$(POD_NAME)", "pod") for c in command])
    assert code == 0, output
    names = {e["name"] for e in container["env"]} - {"POD_NAME"}
    assert names <= documented_env(), sorted(names - documented_env())
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > Settings().hard_time_limit_s


def _probe_argv(probe: dict[str, Any]) -> list[str]:
    """A worker's ping probe as argv: ``sh -c "celery ... ping -d face@$POD_NAME ..."``."""
    command = probe["exec"]["command"]
    assert command[:2] == ["sh", "-c"], command
    return command[2].split()


def test_k8s_worker_probes_ping_the_worker_itself() -> None:
    deployment = k8s_deployments()["visionq-worker-face"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    name = container["command"][container["command"].index("-n") + 1]
    assert name == "face@$(POD_NAME)"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        argv = _probe_argv(container[kind])
        assert argv[:5] == ["celery", "-A", "tasks", "inspect", "ping"], kind
        assert argv[argv.index("-d") + 1] == "face@$POD_NAME", f"{kind}: ping its own name"
        code, output = celery_help(argv)
        assert code == 0, output
        # a probe must be able to fail before the kubelet gives up on it
        assert container[kind]["timeoutSeconds"] >= 5 + 5, kind
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, \
        "a worker loading its model must not be killed by liveness"


def test_k8s_api_probes_hit_endpoints_that_answer(idle_redis_url: str) -> None:
    """Liveness /healthz, readiness /readyz?scope=api: against the real app with Redis up
    and no worker, both answer 200 while plain /readyz is 503; with Redis down readiness
    fails and liveness does not (a restart would not bring Redis back)."""
    from api import create_app

    deployment = k8s_deployments()["visionq-api"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[0] == "gunicorn" and command[-1] == "api:create_app()"
    result = subprocess.run([str(BIN / "gunicorn"), "--check-config", *command[1:]],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env=service_env(idle_redis_url))
    assert result.returncode == 0, result.stdout + result.stderr
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"0.0.0.0:{port['http']}" in command
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert live["port"] == ready["port"] == "http"
    names = {e["name"] for e in container["env"]}
    assert names <= documented_env(), sorted(names - documented_env())
    with create_app({"redis_url": idle_redis_url, "history_writer": False}).test_client() as up:
        assert up.get(live["path"]).status_code == 200
        assert up.get(ready["path"]).status_code == 200
        assert up.get("/readyz").status_code == 503, "no worker: the full check must fail"
    down_app = create_app({"redis_url": "redis://127.0.0.1:1/0", "history_writer": False})
    with down_app.test_client() as down:
        assert down.get(live["path"]).status_code == 200
        assert down.get(ready["path"]).status_code == 503
    [service] = [d for d in k8s_by_kind()["Service"] if d["metadata"]["name"] == "visionq-api"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_long_running_service_restarts_and_has_a_healthcheck(
        compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        probe = service.get("healthcheck", {}).get("test")
        assert probe and probe[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
    for queue in QUEUES:
        assert compose["services"][f"worker-{queue}"]["init"] is True, \
            "docker-init reaps the pool's children and forwards SIGTERM"


def _http_probe_url(service: dict[str, Any]) -> str:
    probe = service["healthcheck"]["test"]
    [url] = re.findall(r"http://127\.0\.0\.1:\d+/\S*?(?=['\s\"]|$)", " ".join(probe))
    return url


@pytest.mark.parametrize(("name", "port"), [("api", 8000), ("flower", 5555),
                                            ("exporter", 9808), ("autoscaler", 9809),
                                            ("prometheus", 9090), ("grafana", 3000)])
def test_http_healthchecks_probe_the_port_the_service_listens_on(
        compose: dict[str, Any], name: str, port: int) -> None:
    service = compose["services"][name]
    url = _http_probe_url(service)
    assert url.startswith(f"http://127.0.0.1:{port}/"), url
    command = " ".join(str(c) for c in service.get("command", []))
    published = " ".join(str(p) for p in service.get("ports", []))
    assert str(port) in command + published or name in ("grafana",), \
        f"{name}: nothing says it listens on {port}"


def test_exporter_healthcheck_command_passes_against_a_live_exporter(
        compose: dict[str, Any], redis_url: str) -> None:
    """The exporter's probe, run as Docker would run it (with this test's port)."""
    service = compose["services"]["exporter"]
    port = free_port()
    command = list(service["command"])
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    process = spawn("compose-exporter-probe", [str(BIN / "python"), *command[1:]],
                    service_env(redis_url))
    probe = [str(BIN / "python") if part == "python" else part.replace("9808", str(port))
             for part in service["healthcheck"]["test"][1:]]
    try:
        deadline = time.monotonic() + 120  # returns as soon as the probe passes
        while subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
            assert process.poll() is None, log_tail("compose-exporter-probe")
            assert time.monotonic() < deadline, log_tail("compose-exporter-probe")
            time.sleep(0.2)
    finally:
        stop_process(process)
    # and it fails when nothing answers
    assert subprocess.run(probe, capture_output=True, timeout=60).returncode != 0
