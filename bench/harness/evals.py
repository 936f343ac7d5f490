"""What the model evaluations share: the fixtures' faces and labels, decoding as a worker
does, boxes matched at IoU >= 0.5, median timings, test photos with pasted faces."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness.common import FIXTURES, iou, say
from visionq.imaging import DecodedImage, decode, probe
from visionq.settings import Settings

FACES = FIXTURES / "faces"
IMAGENET_VAL = FIXTURES / "imagenet_val" / "images"
CALIBRATION_LABELS = Path(__file__).resolve().parents[1] / "faces_calibration_labels.json"
"""HOG candidates on ../shared/fixtures/imagenet_val labelled face / not face by eye."""
FACE_SOURCES = ("obama.jpg", "biden.jpg", "biden2.jpg", "obama3.jpg", "obama2.jpg",
                "two_people.jpg", "obama_and_biden.jpg")
"""The fixtures whose faces are pasted into test photos."""
MARGIN = 0.6
"""Context kept around each face box (fraction of its size per side): HOG needs the head."""
Box = tuple[int, int, int, int]
"""(left, top, right, bottom), original pixels."""


def ltrb(trbl: Sequence[int], scale: float = 1) -> Box:
    """A ``face_recognition`` location (top, right, bottom, left) as (l, t, r, b) x scale."""
    top, right, bottom, left = trbl
    return (round(left * scale), round(top * scale), round(right * scale),
            round(bottom * scale))


def box_of(found: dict[str, Any]) -> Box:
    """The box of one face or detection of a result."""
    return (found["x_min"], found["y_min"], found["x_max"], found["y_max"])


def expected_faces() -> dict[str, list[Box]]:
    """The face fixtures' boxes (``faces/expected.json``) per photo name."""
    images = json.loads((FACES / "expected.json").read_text())["images"]
    return {name: [ltrb(face["box_trbl"]) for face in info["faces"]]
            for name, info in images.items()}


def labelled_faces() -> dict[str, list[Box]]:
    """The faces labelled by eye among HOG's imagenet_val candidates, per photo name."""
    faces: dict[str, list[Box]] = {}
    for row in json.loads(CALIBRATION_LABELS.read_text())["candidates"]:
        if row["face"]:
            faces.setdefault(row["image"], []).append(tuple(row["box_ltrb"]))
    return faces


def matched(reference: Sequence[Sequence[float]], found: Sequence[Sequence[float]],
            at: float = 0.5) -> list[bool]:
    """Per reference box: whether a found box overlaps it at IoU >= ``at``."""
    return [any(iou(ref, f) >= at for f in found) for ref in reference]


def share(hits: Sequence[bool], digits: int | None = 4) -> float | None:
    """The share of hits (recall), rounded to ``digits``; None without any."""
    if not hits:
        return None
    value = sum(hits) / len(hits)
    return value if digits is None else round(value, digits)


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(median process CPU-s, median wall s, last result) of ``runs`` calls of ``fn``."""
    cpu, wall, result = [], [], None
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2], result


def worker_decode(model: Any, data: bytes) -> DecodedImage:
    """``data`` decoded as the model's worker decodes it (``max_side_for`` + ``decode``)."""
    return decode(data, max_side=model.max_side_for(probe(data)))


def face_model(detector: str | None = None) -> Any:
    """The face plugin, loaded, as a worker whose ``VISIONQ_FACE_DETECTOR`` is
    ``detector`` (default: this environment's)."""
    from workers.plugins.face_recognition_model import FaceRecognitionModel

    settings = Settings()
    if detector is not None:
        settings = settings.model_copy(update={"face_detector": detector})
    model = FaceRecognitionModel(settings)
    model.load()
    return model


def detect_faces(model: Any, data: bytes, options: dict[str, Any]) -> list[Box]:
    """The face boxes a face job with ``options`` returns (decoded as the worker does)."""
    faces = model.predict([worker_decode(model, data)], options)[0]["faces"]
    return [box_of(face) for face in faces]


def face_crops() -> list[Image.Image]:
    """The faces of ``FACE_SOURCES`` with ``MARGIN`` around them; ``info["face"]`` is the
    face's (x, y, width, height) in the crop."""
    expected = expected_faces()
    crops = []
    for name in FACE_SOURCES:
        image = Image.open(FACES / name).convert("RGB")
        for left, top, right, bottom in expected[name]:
            w, h = right - left, bottom - top
            box = (max(0, left - MARGIN * w), max(0, top - MARGIN * h),
                   min(image.width, right + MARGIN * w), min(image.height, bottom + MARGIN * h))
            crop = image.crop(tuple(round(v) for v in box))
            crop.info["face"] = (left - box[0], top - box[1], w, h)
            crops.append(crop)
    return crops


def background(name: str, size: tuple[int, int]) -> Image.Image:
    """A face-free fixture photo upscaled to ``size``: the canvas of a test photo."""
    return Image.open(FACES / name).convert("RGB").resize(size, Image.Resampling.BICUBIC)


def scaled_face(crop: Image.Image, face_px: float) -> tuple[Image.Image, float]:
    """``crop`` resized so that its face is ``face_px`` high, and the scale."""
    scale = face_px / crop.info["face"][3]
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return crop.resize(size, Image.Resampling.LANCZOS), scale


def paste(canvas: Image.Image, scaled: Image.Image, at: tuple[int, int],
          crop: Image.Image, scale: float) -> Box:
    """Paste ``scaled`` (``crop`` x ``scale``) at ``at``; the pasted face's box."""
    x, y = at
    fx, fy, fw, fh = crop.info["face"]
    canvas.paste(scaled, at)
    return (round(x + fx * scale), round(y + fy * scale), round(x + (fx + fw) * scale),
            round(y + (fy + fh) * scale))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def say_table(rows: Iterable[dict[str, Any]], columns: Sequence[str] = ()) -> None:
    """``rows`` on the console under a header: ``columns`` (default: the first row's keys)
    separated by " | "."""
    for number, row in enumerate(rows):
        columns = columns or list(row)
        if number == 0:
            say(" | ".join(columns))
        say(" | ".join(str(row.get(column)) for column in columns))
