"""What every weights installer shares: writing the prepared file and its manifest
atomically, and the command line (``--models-dir``, a local source, ``--force``)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.weights import MANIFEST_FILE


class WeightsError(RuntimeError):
    """The package could not be fetched, or its files are not the pinned ones."""


def write_model(onnx_path: Path, onnx_bytes: bytes, manifest: dict[str, Any]) -> None:
    """``onnx_path`` replaced whole (a reader never sees half a file), then its manifest:
    an install interrupted between the two is redone, as it has no matching manifest."""
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    partial = onnx_path.with_suffix(".partial")
    partial.write_bytes(onnx_bytes)
    partial.replace(onnx_path)
    (onnx_path.parent / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def main(argv: list[str] | None, *, description: str, source_flag: str, source_help: str,
         install: Callable[[Path | None, Path | None, bool], Path]) -> int:
    """``python -m workers.install.<model>``: install, print the path; exit 1 with the reason
    on a pin mismatch or a failed fetch."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="default: VISIONQ_MODELS_DIR or ~/.cache/visionq/models")
    parser.add_argument(source_flag, dest="source", metavar=source_flag.strip("-").upper(),
                        type=Path, default=None, help=source_help)
    parser.add_argument("--force", action="store_true", help="install again even if installed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = install(args.models_dir, args.source, args.force)
    except WeightsError as exc:
        parser.exit(1, f"error: {exc}\n")
    print(path)
    return 0
