"""EC2 Auto Scaling backend: one Auto Scaling group per queue.

* ``apply`` clamps to the group's own MinSize/MaxSize and calls ``SetDesiredCapacity``
  with ``HonorCooldown=False`` (the policy already stabilises; group cooldowns would
  only delay it).
* ``protect`` keeps *scale-in protection* exactly on the instances whose worker is busy,
  so when desired capacity drops AWS terminates idle instances first.
* A termination *lifecycle hook* holds a terminating instance in ``Terminating:Wait``:
  the instance's drain script (``autoscale/user-data.sh``) sends the worker SIGTERM
  (Celery warm shutdown: stop consuming, finish in-flight tasks) and then completes the
  lifecycle action itself. ``release_drained`` is the controller's side: it sends
  heartbeats for instances still busy so the hook does not time out mid-task, and
  completes the action for instances idle for ``drain_grace_seconds`` (their drain script
  died).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError

from autoscale.backends import Capacity

log = logging.getLogger(f"visionq.{__name__}")

HOOK_NAME = "visionq-drain"
#: Longest a terminating instance may wait for its worker; longer than the slowest task.
DEFAULT_HEARTBEAT_TIMEOUT = 900
#: How long an idle terminating instance gets to complete its own lifecycle action.
DEFAULT_DRAIN_GRACE_SECONDS = 120.0
#: SetInstanceProtection takes at most 50 instance ids per call.
PROTECT_BATCH = 50

SERVING = {"InService"}
PENDING = {"Pending", "Pending:Wait", "Pending:Proceed", "Warmed:Pending"}
TERMINATING_WAIT = "Terminating:Wait"


def make_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    return boto3.client("autoscaling", region_name=region, endpoint_url=endpoint_url)


class EC2Backend:
    def __init__(
        self,
        groups: Mapping[str, str],
        client: Any | None = None,
        hook_name: str = HOOK_NAME,
        drain_grace_seconds: float = DEFAULT_DRAIN_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.groups = dict(groups)
        self.client = client if client is not None else make_client()
        self.hook_name = hook_name
        self.drain_grace_seconds = drain_grace_seconds
        self.clock = clock
        self._described: dict[str, dict[str, Any]] = {}
        self._waiting_since: dict[str, float] = {}

    # -- reading ------------------------------------------------------------------

    def describe(self) -> dict[str, dict[str, Any]]:
        """Group descriptions keyed by queue (fresh)."""
        by_name: dict[str, dict[str, Any]] = {}
        paginator = self.client.get_paginator("describe_auto_scaling_groups")
        for page in paginator.paginate(AutoScalingGroupNames=list(self.groups.values())):
            for group in page["AutoScalingGroups"]:
                by_name[group["AutoScalingGroupName"]] = group
        missing = [g for g in self.groups.values() if g not in by_name]
        if missing:
            raise LookupError(f"Auto Scaling group(s) not found: {', '.join(missing)}")
        self._described = {q: by_name[g] for q, g in self.groups.items()}
        return self._described

    def current(self) -> dict[str, Capacity]:
        out = {}
        for queue, group in self.describe().items():
            states = [(i["InstanceId"], i["LifecycleState"]) for i in group["Instances"]]
            out[queue] = Capacity(
                current=sum(s in SERVING for _, s in states),
                pending=sum(s in PENDING for _, s in states),
                draining=sum(s.startswith("Terminating") for _, s in states),
                ids=tuple(i for i, s in states if s in SERVING | PENDING),
            )
        return out

    # -- acting -------------------------------------------------------------------

    def apply(self, desired: Mapping[str, int]) -> dict[str, int]:
        groups = self._described or self.describe()
        applied = {}
        for queue, n in desired.items():
            group = groups[queue]
            target = max(group["MinSize"], min(group["MaxSize"], n))
            if target != n:
                log.info("%s: %d clamped to group limits [%d, %d]",
                         queue, n, group["MinSize"], group["MaxSize"])
            if target != group["DesiredCapacity"]:
                self.client.set_desired_capacity(
                    AutoScalingGroupName=group["AutoScalingGroupName"],
                    DesiredCapacity=target, HonorCooldown=False,
                )
                group["DesiredCapacity"] = target
            applied[queue] = target
        return applied

    def protect(self, ids: Iterable[str]) -> None:
        busy = set(ids)
        for group in (self._described or self.describe()).values():
            change: dict[bool, list[str]] = {True: [], False: []}
            for inst in group["Instances"]:
                if inst["LifecycleState"] not in SERVING:
                    continue
                want = inst["InstanceId"] in busy
                if bool(inst.get("ProtectedFromScaleIn")) != want:
                    change[want].append(inst["InstanceId"])
            for flag, instance_ids in change.items():
                for i in range(0, len(instance_ids), PROTECT_BATCH):
                    batch = instance_ids[i:i + PROTECT_BATCH]
                    self.client.set_instance_protection(
                        InstanceIds=batch, ProtectedFromScaleIn=flag,
                        AutoScalingGroupName=group["AutoScalingGroupName"],
                    )
                    log.info("%s scale-in protection on %s",
                             "set" if flag else "cleared", ", ".join(batch))
            for inst in group["Instances"]:
                if inst["InstanceId"] in change[True] + change[False]:
                    inst["ProtectedFromScaleIn"] = inst["InstanceId"] in change[True]

    # -- draining -----------------------------------------------------------------

    def ensure_lifecycle_hooks(self, heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT) -> None:
        """Create (or update) the termination hook on every group."""
        for group in self.groups.values():
            self.client.put_lifecycle_hook(
                LifecycleHookName=self.hook_name, AutoScalingGroupName=group,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                HeartbeatTimeout=heartbeat_timeout, DefaultResult="CONTINUE",
            )

    def release_drained(self, busy: Iterable[str]) -> list[str]:
        """Heartbeat busy terminating instances; complete idle ones after the grace period.

        Returns the instance ids whose lifecycle action was completed here.
        """
        busy = set(busy)
        now = self.clock()
        completed: list[str] = []
        waiting: set[str] = set()
        for group in (self._described or self.describe()).values():
            name = group["AutoScalingGroupName"]
            for inst in group["Instances"]:
                if inst["LifecycleState"] != TERMINATING_WAIT:
                    continue
                iid = inst["InstanceId"]
                waiting.add(iid)
                args = {"LifecycleHookName": self.hook_name, "AutoScalingGroupName": name,
                        "InstanceId": iid}
                try:
                    if iid in busy:
                        self._waiting_since[iid] = now
                        self.client.record_lifecycle_action_heartbeat(**args)
                    elif now - self._waiting_since.setdefault(iid, now) >= (
                        self.drain_grace_seconds
                    ):
                        self.client.complete_lifecycle_action(
                            LifecycleActionResult="CONTINUE", **args)
                        completed.append(iid)
                        log.warning("%s: completed lifecycle action after %.0fs idle "
                                    "(its drain script did not)", iid,
                                    self.drain_grace_seconds)
                except ClientError as exc:  # e.g. the instance completed it meanwhile
                    log.info("%s: lifecycle call failed: %s", iid, exc)
        self._waiting_since = {i: t for i, t in self._waiting_since.items() if i in waiting}
        return completed
