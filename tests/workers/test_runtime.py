"""The per-process model cache: a model is created, loaded and warmed up once, reported to
its listener, and reused until forgotten."""

from __future__ import annotations

import pytest

from tests.workers.conftest import SLEEPY, WorkerEnv
from tests.workers.sleepy_model import SleepyModel
from workers import runtime

COUNTING = "tests.workers.test_runtime:CountingModel"


class CountingModel(SleepyModel):
    """Counts ``load()`` and ``predict()`` calls across instances."""

    loads = 0
    predictions = 0

    def load(self) -> None:
        type(self).loads += 1

    def predict(self, images, options):  # noqa: ANN001, ANN201 - the protocol's signature
        type(self).predictions += 1
        return super().predict(images, options)


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    CountingModel.loads = CountingModel.predictions = 0


def test_load_model_loads_warms_up_caches_and_reports(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=COUNTING)
    heard: list[tuple[str, str, float]] = []
    model = runtime.load_model("classify", lambda *event: heard.append(event))
    assert isinstance(model, CountingModel)
    assert CountingModel.loads == 1 and CountingModel.predictions == 1  # the warm-up
    assert runtime.loaded() == {"classify": model}
    [(task, name, seconds)] = heard
    assert (task, name) == ("classify", COUNTING) and seconds >= 0


def test_model_for_loads_once_and_reports_that_load(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=COUNTING)
    heard: list[tuple[str, str, float]] = []
    first = runtime.model_for("classify", lambda *event: heard.append(event))
    again = runtime.model_for("classify", lambda *event: heard.append(event))
    assert again is first
    assert CountingModel.loads == 1
    assert [event[:2] for event in heard] == [("classify", COUNTING)]


def test_forget_makes_the_next_use_load_a_fresh_copy(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=COUNTING)
    first = runtime.load_model("classify")
    runtime.forget("classify")
    assert runtime.loaded() == {}
    second = runtime.model_for("classify")
    assert second is not first and CountingModel.loads == 2
    runtime.forget("classify")
    runtime.forget("classify")  # forgetting what is not loaded is fine


def test_loaded_is_a_copy(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=SLEEPY)
    runtime.load_model("classify")
    runtime.loaded().clear()
    assert "classify" in runtime.loaded()


def test_a_model_for_another_queue_is_refused(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_DETECT=SLEEPY, SLEEPY_TASK="classify")
    heard: list[object] = []
    with pytest.raises(ValueError, match="serves 'classify', not the 'detect' queue"):
        runtime.load_model("detect", heard.append)
    assert runtime.loaded() == {} and heard == []


def test_a_failing_load_caches_nothing(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=SLEEPY, SLEEPY_FAIL_LOAD="weights file is corrupt")
    with pytest.raises(RuntimeError, match="weights file is corrupt"):
        runtime.load_model("classify")
    assert runtime.loaded() == {}


def test_unknown_task(worker_env: WorkerEnv) -> None:
    with pytest.raises(ValueError, match="unknown task 'ocr'"):
        runtime.model_for("ocr")
