"""Network namespaces as "machines": one switch namespace holding a bridge, and one
namespace per node joined to it by a veth pair, addressed in a private /24.

Nothing is added to the host's own network namespace: the bridge lives in the switch
namespace and each veth is created directly between two of our namespaces, so every
address exists only inside namespaces this module made, and deleting them removes every
link.  Processes are started with ``ip netns exec`` in their own session, so a node's whole
process tree can be stopped (or SIGKILLed, like a machine losing power) by its group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231.7"
"""Private range used only inside the namespaces (each run has its own switch, so two runs
with the same addresses never meet)."""


class NamespaceUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip``, or no CAP_SYS_ADMIN)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"vqprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"ip netns add failed: {exc}"
    try:
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except RuntimeError as exc:
        return f"cannot create a bridge in a namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@dataclass
class Node:
    name: str
    netns: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Fabric:
    """A switch and its nodes; ``close()`` always removes all of them."""

    prefix: str
    log_dir: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    _switch: str = ""

    def open(self) -> Fabric:
        self._switch = f"{self.prefix}-sw"
        _ip("netns", "add", self._switch)
        _ip("-n", self._switch, "link", "set", "lo", "up")
        _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self._switch, "link", "set", "br0", "up")
        return self

    def add_node(self, name: str, host: int) -> Node:
        netns = f"{self.prefix}-{name}"
        node = Node(name, netns, f"{SUBNET}.{host}")
        _ip("netns", "add", netns)
        self.nodes[name] = node  # registered first: close() removes it even if setup fails
        _ip("-n", netns, "link", "set", "lo", "up")
        # One veth pair between the switch and the node: "p-<name>" on the bridge side,
        # "eth0" inside the node.
        port = f"p-{name}"[:15]
        _ip("-n", self._switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", netns)
        _ip("-n", self._switch, "link", "set", port, "master", "br0")
        _ip("-n", self._switch, "link", "set", port, "up")
        _ip("-n", netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        return node

    def spawn(self, node: Node, label: str, argv: Sequence[str], env: dict[str, str],
              cwd: Path) -> subprocess.Popen:
        """Start ``argv`` inside ``node`` (own session, output to ``<log_dir>/<label>.log``)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{label}.log", "wb")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(node.command(argv), env=env, cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()  # the child holds its own descriptor
        node.processes.append(process)
        return process

    def run(self, node: Node, argv: Sequence[str], env: dict[str, str], cwd: Path,
            timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(node.command(argv), env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout_s)

    def close(self) -> None:
        """Kill every process of every node, then delete the namespaces (which removes the
        veth pairs and the bridge with them).  Safe to call on a half-built fabric."""
        for node in self.nodes.values():
            for process in node.processes:
                kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for node in self.nodes.values():
            for process in node.processes:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill_group(process, signal.SIGKILL)
                    process.wait(5)
        for netns in [n.netns for n in self.nodes.values()] + [self._switch]:
            if netns:
                _kill_stragglers(netns)
                subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        self.nodes.clear()


def kill_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _kill_stragglers(netns: str) -> None:
    """Anything still running inside one of our namespaces was started by us: SIGKILL it so
    the namespace can really go away."""
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                            timeout=10)
    for pid in result.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
