"""The model registry with the real entry points and plugins: names, import paths,
configuration passed in by ``create(name, settings)``, and the contract it enforces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from visionq.imaging import DecodedImage
from visionq.options import TASK_OPTIONS, ClassifyOptions, DetectOptions
from visionq.settings import DEFAULT_MODELS, Settings
from workers import registry, weights
from workers.model import Model, ModelBase, ModelLoadError, PluginSettings

BUILT_IN = {"face_recognition": "face", "centernet_mbv3": "detect",
            "efficientnet_lite0": "classify"}


class Incomplete:
    """A plugin written against the old, smaller protocol."""

    name, task, version, extra, input_size = "incomplete", "detect", "1", "detect", None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self) -> None:
        pass

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict]:
        return [{} for _ in images]


class WrongOptions(ModelBase):
    name, task, version, extra = "wrong", "detect", "1", "detect"
    options = ClassifyOptions

    def load(self) -> None:
        pass

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict]:
        return [{} for _ in images]


class NarrowDetectOptions(DetectOptions):
    """A subclass of the task's options is allowed (a plugin may narrow them)."""


class NarrowerDetect(WrongOptions):
    name = "narrower"
    options = NarrowDetectOptions


def test_built_in_models_are_registered_and_are_the_defaults() -> None:
    assert set(BUILT_IN) <= set(registry.available())
    assert {task: name for name, task in BUILT_IN.items()} == DEFAULT_MODELS


@pytest.mark.parametrize(("name", "task"), sorted(BUILT_IN.items()))
def test_built_in_classes_keep_the_contract(name: str, task: str) -> None:
    cls = registry.model_class(name)
    assert issubclass(cls, ModelBase)
    assert (cls.name, cls.task) == (name, task)
    assert cls.options is TASK_OPTIONS[task]
    assert issubclass(cls.settings_class, PluginSettings)
    assert cls.settings_class is not PluginSettings, "each built-in has settings of its own"


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'.*centernet_mbv3"):
        registry.model_class("nope")


def test_import_path_names_an_unpackaged_model() -> None:
    model = registry.create("tests.workers.sleepy_model:SleepyModel", Settings())
    assert isinstance(model, Model) and model.name == "sleepy"
    assert model.options is TASK_OPTIONS[model.task]
    with pytest.raises(ModelLoadError, match="cannot import model"):
        registry.model_class("tests.workers.no_such_module:Thing")
    with pytest.raises(ModelLoadError, match="cannot import model"):
        registry.model_class("tests.workers.sleepy_model:NoSuchClass")


def test_a_model_missing_part_of_the_contract_is_refused_by_name() -> None:
    with pytest.raises(ModelLoadError) as caught:
        registry.create(f"{__name__}:Incomplete", Settings())
    message = str(caught.value)
    assert "fork_safe" in message and "max_side_for" in message and "options" in message
    assert "ModelBase" in message


def test_options_must_be_the_tasks_contract() -> None:
    with pytest.raises(ModelLoadError, match="DetectOptions"):
        registry.create(f"{__name__}:WrongOptions", Settings())
    assert registry.create(f"{__name__}:NarrowerDetect", Settings()).name == "narrower"


def test_create_passes_the_settings_in(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path)
    detector = registry.create("centernet_mbv3", settings)
    assert detector.settings is settings
    assert detector.models_dir == tmp_path
    with pytest.raises(ModelLoadError, match=str(weights.DETECT.model_dir(tmp_path))):
        detector.load()  # nothing installed there: the message names the folder


def test_plugin_settings_come_from_the_environment_then_keywords(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONQ_CLASSIFY_THREADS", "3")
    monkeypatch.setenv("VISIONQ_DETECT_THREADS", "2")
    monkeypatch.setenv("VISIONQ_DETECT_MAX_BATCH", "4")
    classify = registry.create("efficientnet_lite0", Settings())
    assert classify.config.num_threads == 3
    detect = registry.create("centernet_mbv3", Settings())
    assert (detect.config.num_threads, detect.config.max_batch) == (2, 4)
    assert registry.create("centernet_mbv3", Settings(), max_batch=1).config.max_batch == 1
    with pytest.raises(ValidationError, match="max_batch"):
        registry.create("centernet_mbv3", Settings(), max_batch=0)
    with pytest.raises(ValidationError, match="no_such_knob"):
        registry.create("efficientnet_lite0", Settings(), no_such_knob=1)


def test_default_settings_are_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISIONQ_CLASSIFY_THREADS", raising=False)
    model = registry.create("efficientnet_lite0")
    assert model.config.num_threads is None and model.settings == Settings()


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_loads_and_runs_with_default_options(name: str) -> None:
    model = registry.create(name, Settings(), **({"num_threads": 1} if name != "face_recognition"
                                                  else {}))
    if name == "centernet_mbv3" and weights.DETECT.installed_manifest(
            weights.DETECT.model_dir(model.models_dir)) is None:
        pytest.skip("detect weights not installed (run `visionq install-models`)")
    model.load()
    blank = DecodedImage.from_array(np.zeros((64, 48, 3), np.uint8))
    [result] = model.predict([blank], {})
    assert (result["model"], result["width"], result["height"]) == (name, 48, 64)
    assert result["model_version"] == model.version


def test_the_readme_example_plugin_keeps_the_contract(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    source = re.search(r"```python\n# my_package/red_detector.py\n(.*?)```", page, re.S)
    assert source, "docs/models.md's worked example is gone"
    (tmp_path / "readme_red_detector.py").write_text(source.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VISIONQ_RED_MIN_RED", "150")
    model = registry.create("readme_red_detector:RedDetector", Settings())
    assert model.config.min_red == 150 and model.input_size == 256
    model.load()
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10:20, 30:50, 0] = 180
    [result] = model.predict([DecodedImage.from_array(pixels)], {})
    assert [(p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in result["predictions"]] == [
        (30, 10, 49, 19)]
    with pytest.raises(ValueError):
        model.predict([DecodedImage.from_array(pixels)], {"min_confidence": 2})
