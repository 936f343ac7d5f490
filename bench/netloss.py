"""``python -m bench loss``: classification goodput under packet loss, the seeds' experiment.

Two network namespaces made for the run (``vqb<pid>-cli``, ``vqb<pid>-srv``) joined by one
veth pair with private addresses that exist only inside them; nothing is added to the
host's namespace, and both namespaces are deleted at the end whatever happens.  The
system under test (visionq: Redis, API, classify worker; then the sync Flask baseline)
runs in the server namespace; the load generator runs in the client namespace
(``python -m bench client``), so every request crosses the veth.  Loss is injected with
nftables in the client namespace (there is no ``tc netem`` here):
``numgen random mod 100 < N drop`` on the veth, client->server (``egress``, like one netem
qdisc on the client), server->client (``ingress``) or ``both``.

Clients: visionq gets a client that behaves like a real one (3 s timeout per attempt,
retries with exponential backoff and jitter, ``Idempotency-Key`` on the submit, long-poll
for the result, a 10 s overall deadline); the sync baseline gets the seeds' client (one
POST, 3 s timeout).  Goodput is reported within 3 s of the first send (the seeds' figure)
and within the deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import plots
from bench.harness.common import REPO, TASK_IMAGES, Run, cores, free_port, say
from bench.harness.loadgen import Bodies, post_call, resilient_call, run_point, summarise
from bench.harness.stack import SyncBaseline, VisionqStack

SUBNET = "10.231.9"
CLIENT_IP, SERVER_IP = f"{SUBNET}.1", f"{SUBNET}.2"
SEEDS_GOODPUT = {0: 21.1, 20: 10.5, 40: 2.4, 60: 0.41}
"""The seeds' classification service (MobileNetV2, 4 worker VMs, 3 s HTTP timeout), req/s."""
SEEDS_WORKERS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--losses", default="0,20,40,60", help="loss percentages")
    parser.add_argument("--rate", type=float, default=40,
                        help="offered classification requests/s (Poisson)")
    parser.add_argument("--duration", type=float, default=20, help="seconds per point")
    parser.add_argument("--direction", default="egress", choices=("egress", "ingress", "both"))
    parser.add_argument("--deadline", type=float, default=10,
                        help="overall deadline of visionq's retrying client (s)")
    parser.add_argument("--systems", default="visionq,sync")
    parser.add_argument("--api-threads", type=int, default=16,
                        help="gunicorn threads per API worker (16 as `visionq up`; 1: sync)")
    parser.add_argument("--name", default="loss")


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True)
    parser.add_argument("--scenario", choices=("resilient", "post"), required=True)
    parser.add_argument("--task", default="classify")
    parser.add_argument("--path", default="")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--deadline", type=float, required=True)
    parser.add_argument("--slo-ms", default="3000", help="comma-separated SLOs")
    parser.add_argument("--seed", type=int, default=1)


def client_main(args: argparse.Namespace) -> None:
    """One open-loop point; the summary per SLO as JSON on stdout."""
    bodies = Bodies.of(TASK_IMAGES[args.task])
    if args.scenario == "resilient":
        call = resilient_call(args.url, args.task, bodies)
    else:
        call = post_call(args.url, args.path, bodies)
    slos = [float(s) / 1000 for s in args.slo_ms.split(",")]
    _, outcomes = run_point(call, args.rate, args.duration, slos[0], args.deadline,
                            int(args.rate * args.duration * 2) + 10, seed=args.seed,
                            label="client")
    print(json.dumps({f"{round(s * 1000)}": summarise(outcomes, args.rate, args.duration, s)
                      for s in slos}))


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class LossyLink:
    """Client and server namespaces with one veth pair; ``set_loss`` rewrites the nftables
    table in the client namespace; ``close`` deletes both namespaces (and the veth)."""

    def __init__(self) -> None:
        tag = f"vqb{os.getpid()}"
        self.client, self.server = f"{tag}-cli", f"{tag}-srv"
        self.made: list[str] = []

    def exec_prefix(self, netns: str) -> list[str]:
        return ["ip", "netns", "exec", netns]

    def open(self) -> LossyLink:
        for netns in (self.client, self.server):
            _ip("netns", "add", netns)
            self.made.append(netns)
            _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", self.client, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0",
            "netns", self.server)
        for netns, address in ((self.client, CLIENT_IP), (self.server, SERVER_IP)):
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "veth0")
            _ip("-n", netns, "link", "set", "veth0", "up")
        return self

    def set_loss(self, percent: int, direction: str) -> None:
        rules = []
        if percent > 0 and direction in ("egress", "both"):
            rules.append('chain out { type filter hook output priority 0; policy accept; '
                         'oifname "veth0" counter; '
                         f'oifname "veth0" numgen random mod 100 < {percent} counter drop; }}')
        if percent > 0 and direction in ("ingress", "both"):
            rules.append('chain in { type filter hook input priority 0; policy accept; '
                         'iifname "veth0" counter; '
                         f'iifname "veth0" numgen random mod 100 < {percent} counter drop; }}')
        script = "table inet vqloss\ndelete table inet vqloss\n"
        if rules:
            script += "table inet vqloss {\n" + "\n".join(rules) + "\n}\n"
        result = subprocess.run([*self.exec_prefix(self.client), "nft", "-f", "-"],
                                input=script, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"nft: {result.stderr.strip()}")

    def measured_loss(self) -> float | None:
        """Dropped / seen packets from the rule counters (None without rules)."""
        result = subprocess.run([*self.exec_prefix(self.client), "nft", "list", "table", "inet",
                                 "vqloss"], capture_output=True, text=True, timeout=10)
        counts = [int(n) for n in re.findall(r"counter packets (\d+)", result.stdout)]
        if len(counts) < 2:
            return None
        seen, dropped = sum(counts[0::2]), sum(counts[1::2])
        return round(dropped / seen, 3) if seen else None

    def close(self) -> None:
        for netns in self.made:
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        self.made.clear()


def _client(link: LossyLink, args: list[str], timeout_s: float) -> dict[str, Any]:
    result = subprocess.run([*link.exec_prefix(link.client), sys.executable, "-m", "bench",
                             "client", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout_s)
    sys.stderr.write(result.stderr[-1500:])
    if result.returncode != 0:
        raise RuntimeError(f"client failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y nftables iproute2)"
    return None


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    reason = unavailable()
    if reason:
        raise SystemExit(f"bench loss: {reason}")
    results = Run(args.name, argv)
    losses = [int(x) for x in args.losses.split(",")]
    systems = [s for s in args.systems.split(",") if s]
    data = results.data
    data.update({"rate": args.rate, "duration_s": args.duration, "direction": args.direction,
                 "deadline_s": args.deadline, "losses": losses, "systems": {},
                 "seeds_goodput": SEEDS_GOODPUT,
                 "seeds_goodput_per_worker": {k: round(v / SEEDS_WORKERS, 3)
                                              for k, v in SEEDS_GOODPUT.items()}})
    link = LossyLink()
    try:
        link.open()
        for system in systems:
            port = free_port()
            prefix = link.exec_prefix(link.server)
            url = f"http://{SERVER_IP}:{port}"
            if system == "visionq":
                server: Any = VisionqStack(["classify"], host=SERVER_IP, port=port,
                                           prefix=prefix, api_threads=args.api_threads)
                client_args = ["--scenario", "resilient", "--deadline", str(args.deadline),
                               "--slo-ms", f"3000,{round(args.deadline * 1000)}"]
            else:
                server = SyncBaseline("classify", host=SERVER_IP, port=port, prefix=prefix)
                client_args = ["--scenario", "post", "--path", "/v1/vision/classify",
                               "--deadline", "3", "--slo-ms", "3000"]
            points = []
            with server:
                link.set_loss(0, args.direction)
                _client(link, ["--url", url, "--rate", "2", "--duration", "3", *client_args],
                        120)  # warm-up
                for loss in losses:
                    link.set_loss(loss, args.direction)
                    summaries = _client(link, ["--url", url, "--rate", str(args.rate),
                                               "--duration", str(args.duration), *client_args],
                                        args.duration + args.deadline + 120)
                    measured = link.measured_loss()
                    link.set_loss(0, args.direction)
                    at3 = summaries["3000"]
                    point = {"loss_pct": loss, "measured_drop_fraction": measured,
                             "goodput_3s_rps": at3["goodput_rps"],
                             "goodput_3s_per_core": round(at3["goodput_rps"] / cores(), 2),
                             "summaries": summaries}
                    if len(summaries) > 1:
                        last = summaries[str(max(int(k) for k in summaries))]
                        point["goodput_deadline_rps"] = last["goodput_rps"]
                    say(f"{system} loss {loss}% (measured {measured}): goodput@3s "
                        f"{at3['goodput_rps']}/s, errors {at3['errors']}")
                    points.append(point)
                    time.sleep(3)
            data["systems"][system] = {"setup": server.describe(), "points": points}
    finally:
        link.close()
    data["vs_seeds_per_core"] = {
        system: {str(p["loss_pct"]): round(p["goodput_3s_per_core"] /
                                           data["seeds_goodput_per_worker"][p["loss_pct"]], 2)
                 for p in entry["points"] if p["loss_pct"] in SEEDS_GOODPUT}
        for system, entry in data["systems"].items()}
    groups = {f"{loss} %": {} for loss in losses}
    for system, entry in data["systems"].items():
        for p in entry["points"]:
            groups[f"{p['loss_pct']} %"][f"{system} (goodput@3s/core)"] = p["goodput_3s_per_core"]
    for loss in losses:
        if loss in SEEDS_GOODPUT:
            groups[f"{loss} %"]["seeds per worker VM"] = data["seeds_goodput_per_worker"][loss]
    plots.bars(results.plot_path("goodput"), groups,
               f"classification goodput under packet loss ({args.direction}), offered "
               f"{args.rate:g}/s", "goodput per core (req/s)", log=True)
    results.finish()
    return data
