"""Smoke test of the simulator: the real ``decide()`` beats the naive policy on the step trace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "bench" / "autoscale_sim.py"


def load_sim():
    spec = importlib.util.spec_from_file_location("autoscale_sim", SIM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_step_trace_goal(tmp_path: Path) -> None:
    sim = load_sim()
    results = [sim.run(sim.TRACES["step"], ctl, seed=7, slo=30.0) for ctl in sim.controllers()]
    by = {r.policy: r for r in results}
    assert by["visionq"].lost_tasks == 0 and by["keda"].lost_tasks == 0
    assert by["naive"].lost_tasks > 0  # abrupt scale-in loses work
    assert sim.verdict(results) == {"step": True}
    assert by["visionq"].slo_missed_minutes <= by["keda"].slo_missed_minutes
