"""EC2 backend against a real moto_server over HTTP; lifecycle completion via botocore's Stubber.

moto 5.x implements Auto Scaling groups, desired capacity, scale-in protection (and
honours it when scaling in) and lifecycle hook CRUD, but neither the ``Terminating:Wait``
state nor ``CompleteLifecycleAction`` (it answers HTTP 500), so the drain hand-off is
tested with a Stubber, which still validates every request against the real API model.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from autoscale.backends import Backend, Drains
from autoscale.backends.ec2 import HOOK_NAME, EC2Backend


def group_state(client: Any, group: str) -> tuple[int, dict[str, bool]]:
    g = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    flags = {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in g["Instances"]}
    return g["DesiredCapacity"], flags


def test_apply_clamps_to_the_group_and_reports_capacity(asg) -> None:
    client, group = asg
    backend = EC2Backend({"face": group}, client=client)
    assert isinstance(backend, Backend) and isinstance(backend, Drains)
    assert backend.current()["face"].current == 0
    assert backend.apply({"face": 3}) == {"face": 3}
    desired, instances = group_state(client, group)
    assert desired == 3 and len(instances) == 3
    cap = backend.current()["face"]
    assert (cap.current, cap.pending, cap.draining) == (3, 0, 0)
    assert set(cap.ids) == set(instances)
    # moto itself would accept 9 > MaxSize; the backend clamps
    assert backend.apply({"face": 9}) == {"face": 5}
    assert group_state(client, group)[0] == 5
    assert backend.apply({"face": -1}) == {"face": 0}
    assert group_state(client, group)[0] == 0


def test_protection_follows_busy_workers_and_scale_in_spares_them(asg) -> None:
    client, group = asg
    backend = EC2Backend({"face": group}, client=client)
    backend.apply({"face": 4})
    ids = sorted(backend.current()["face"].ids)
    busy = {ids[0], ids[2]}
    backend.protect(busy)
    _, flags = group_state(client, group)
    assert {i for i, p in flags.items() if p} == busy
    # one finished: its protection is cleared, the other keeps it
    backend.current()
    backend.protect({ids[2]})
    _, flags = group_state(client, group)
    assert {i for i, p in flags.items() if p} == {ids[2]}
    # scale in to 1: the busy (protected) instance survives
    backend.current()
    backend.apply({"face": 1})
    _, flags = group_state(client, group)
    assert list(flags) == [ids[2]]


def test_lifecycle_hook_is_created(asg) -> None:
    client, group = asg
    backend = EC2Backend({"face": group}, client=client)
    backend.ensure_lifecycle_hooks(heartbeat_timeout=600)
    hooks = client.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    assert [(h["LifecycleHookName"], h["LifecycleTransition"], h["HeartbeatTimeout"])
            for h in hooks] == [(HOOK_NAME, "autoscaling:EC2_INSTANCE_TERMINATING", 600)]


def test_missing_group_is_a_clear_error(scaler_moto_url: str, scaler_aws_env: None) -> None:
    client = boto3.client("autoscaling", endpoint_url=scaler_moto_url, region_name="us-east-1")
    with pytest.raises(LookupError, match="no-such-group"):
        EC2Backend({"face": "no-such-group"}, client=client).current()


def _group(*instances: tuple[str, str]) -> dict[str, Any]:
    return {"AutoScalingGroups": [{
        "AutoScalingGroupName": "g", "MinSize": 0, "MaxSize": 5, "DesiredCapacity": 1,
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2",
        "CreatedTime": "2024-01-01T00:00:00Z",
        "Instances": [{
            "InstanceId": iid, "LifecycleState": state, "AvailabilityZone": "us-east-1a",
            "HealthStatus": "Healthy", "ProtectedFromScaleIn": False,
        } for iid, state in instances],
    }]}


def test_release_drained_heartbeats_busy_and_completes_idle_after_grace() -> None:
    client = boto3.client("autoscaling", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    clock = iter([0.0, 50.0, 130.0]).__next__
    backend = EC2Backend({"face": "g"}, client=client, drain_grace_seconds=120, clock=clock)
    hook = {"LifecycleHookName": HOOK_NAME, "AutoScalingGroupName": "g"}
    with Stubber(client) as stub:
        group = _group(("i-busy", "Terminating:Wait"), ("i-idle", "Terminating:Wait"),
                       ("i-ok", "InService"))
        stub.add_response("describe_auto_scaling_groups", group)
        assert backend.current()["face"].draining == 2
        # t=0: busy one gets a heartbeat, idle one starts its grace period
        stub.add_response("record_lifecycle_action_heartbeat", {},
                          {**hook, "InstanceId": "i-busy"})
        assert backend.release_drained({"i-busy"}) == []
        # t=50: still within grace
        stub.add_response("record_lifecycle_action_heartbeat", {},
                          {**hook, "InstanceId": "i-busy"})
        assert backend.release_drained({"i-busy"}) == []
        # t=130: idle past grace -> completed with CONTINUE; busy one now idle starts its clock
        stub.add_response("complete_lifecycle_action", {},
                          {**hook, "InstanceId": "i-idle", "LifecycleActionResult": "CONTINUE"})
        assert backend.release_drained(set()) == ["i-idle"]
        stub.assert_no_pending_responses()


def test_release_drained_tolerates_an_action_already_completed() -> None:
    client = boto3.client("autoscaling", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    backend = EC2Backend({"face": "g"}, client=client, drain_grace_seconds=0,
                         clock=lambda: 0.0)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", _group(("i-1", "Terminating:Wait")))
        backend.current()
        stub.add_client_error("complete_lifecycle_action", "ValidationError",
                              "No active Lifecycle Action found")
        assert backend.release_drained(set()) == []
