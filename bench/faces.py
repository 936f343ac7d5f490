"""``python -m bench faces``: the face decode-scale policy's cost and recall per photo size.

Builds test photos (JPEG q90) of 0.3, 2, 8 and 12 MP by pasting the fixtures' faces (as
``bench face4k`` does) onto upscaled face-free COCO photos, at sizes around the smallest face
the policy promises for that photo size (``min_face_px``, default
``max(36, 72 * sqrt(pixels / 1.6e6))``: ``workers/plugins/face_scale.py``).  Per size class:

1. CPU-s per image in this process (``time.process_time``: other users of the machine do not
   count), probe + decode + detection, for the plugin's default options (68-point
   landmarks) and without landmarks; median of ``--runs``; and the same (no landmarks) for
   the service before issue 17 (full size, or ~960 px above 2560 px; upsample 1);
2. recall against ``face_recognition`` at full resolution with one upsample (its default)
   for faces >= ``min_face_px`` (reference boxes matched at IoU >= 0.5), and against the
   pasted boxes; the smallest pasted face found;
3. the HOG confidence calibration (the plugin's ``HOG_CALIBRATION``): a logistic regression
   of "is a face" on dlib's score over every HOG candidate down to score -1
   (``adjust_threshold``) on the 1,300 natural photos of ``../shared/fixtures/imagenet_val``
   (people, animals, objects: real false positives), labelled by eye where the score is
   >= -0.3 (``bench/faces_calibration_labels.json``) and counted as non-faces below; then
   checked on the bench photos' detections (pasted faces = true).
4. per face detector (``--detectors``, default hog and yunet: before and after issue 28 in one
   run), each run as a worker whose ``VISIONQ_FACE_DETECTOR`` it is (decode included): CPU-s
   and recall per size class as above; CPU-s end to end (probe + decode + detection + 68
   landmarks) of a photo of each size with one face (twice the promised size) and whether it
   is found; the face fixtures' boxes matched at IoU >= 0.5 (and the extra boxes); YuNet's
   boxes on the 1,300 ImageNet photos against the faces labelled there.
Goals (issue 17): <= 0.25 CPU-s per image at every size up to 12 MP, recall >= 0.97 for
faces at or above the promised size.  Issue 28: YuNet becomes the default only if it wins on
CPU-s and recall at every size and matches every fixture box; target then 12 MP with one face
<= 0.08 CPU-s end to end.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.face4k import _timed, face_crops
from bench.harness import plots
from bench.harness.common import FIXTURES, Run, iou, say
from visionq.imaging import decode, probe
from visionq.settings import Settings
from workers.plugins.face_scale import default_min_face_px

SIZE_CLASSES: dict[str, tuple[int, int]] = {
    "0.3 MP": (640, 480), "2 MP": (1632, 1224), "8 MP": (3264, 2448), "12 MP": (4000, 3000)}
FACE_MULTIPLES = (0.6, 0.8, 1.0, 1.15, 1.4, 2.0, 2.8)
"""Pasted face heights as multiples of the promised ``min_face_px`` (below 1: informative)."""
BACKGROUNDS = ("000000000009.jpg", "000000000025.jpg", "000000000034.jpg")
CALIBRATION_LABELS = Path(__file__).with_name("faces_calibration_labels.json")
"""HOG candidates on ../shared/fixtures/imagenet_val labelled face / not face by eye."""
IMAGENET_VAL = FIXTURES / "imagenet_val" / "images"
DETECTORS = ("hog", "yunet")
ONE_FACE_MULTIPLE = 2.0
"""The one-face photos' face height, in promised ``min_face_px``."""
Box = tuple[int, int, int, int]
"""(left, top, right, bottom), original pixels."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photos", type=int, default=3, help="test photos per size class")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per photo")
    parser.add_argument("--classes", default=",".join(SIZE_CLASSES),
                        help="size classes to run (comma-separated)")
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help="face detectors to measure, as VISIONQ_FACE_DETECTOR (YuNet's "
                             "weights: visionq install-models)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="skip the HOG calibration on the 1,300 ImageNet photos")
    parser.add_argument("--name", default="faces")


def build_photo(size: tuple[int, int], min_face: int, seed: int) -> tuple[bytes, list[Box]]:
    """A JPEG (q90) with faces of ``FACE_MULTIPLES`` x ``min_face`` packed in rows (each crop
    keeps its context), and their pasted boxes."""
    rng = random.Random(seed)
    width, height = size
    background = FIXTURES / "faces" / BACKGROUNDS[seed % len(BACKGROUNDS)]
    canvas = Image.open(background).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    crops = face_crops()
    boxes: list[Box] = []
    x = y = row_height = 0
    for index in range(10_000):
        crop = crops[(index + seed) % len(crops)]
        fx, fy, fw, fh = crop.info["face"]
        face = max(20, round(FACE_MULTIPLES[(index + seed) % len(FACE_MULTIPLES)] * min_face))
        scale = face / fh
        scaled = crop.resize((max(1, round(crop.width * scale)),
                              max(1, round(crop.height * scale))), Image.Resampling.LANCZOS)
        if x + scaled.width > width:
            x, y, row_height = 0, y + row_height + rng.randint(0, 8), 0
        if y + scaled.height > height:
            break
        canvas.paste(scaled, (x, y))
        boxes.append((round(x + fx * scale), round(y + fy * scale),
                      round(x + (fx + fw) * scale), round(y + (fy + fh) * scale)))
        x += scaled.width + rng.randint(0, 8)
        row_height = max(row_height, scaled.height)
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue(), boxes


def matched(reference: Sequence[Box], found: Sequence[Box]) -> list[bool]:
    return [any(iou(ref, f) >= 0.5 for f in found) for ref in reference]


def cpu_median(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """(median process CPU-s, last result)."""
    cpu, _wall, result = _timed(fn, runs)
    return cpu, result


def fit_logistic(scores: np.ndarray, labels: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(slope, intercept) of P(face | score) by Newton's method (IRLS), lightly ridged."""
    x = np.stack([scores, np.ones_like(scores)], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (labels - p) - 1e-3 * w
        hessian = (x.T * (p * (1 - p))) @ x + 1e-3 * np.eye(2)
        w = w + np.linalg.solve(hessian, gradient)
    return round(float(w[0]), 3), round(float(w[1]), 3)


class Measurer:
    def __init__(self, detectors: Sequence[str] = DETECTORS) -> None:
        import face_recognition

        from workers.plugins.face_recognition_model import FaceRecognitionModel

        self.fr = face_recognition
        self.models = {}
        for detector in detectors:  # each as a worker with this VISIONQ_FACE_DETECTOR
            model = FaceRecognitionModel(Settings().model_copy(
                update={"face_detector": detector}))
            model.load()
            self.models[detector] = model
        self.model = self.models.get("hog") or next(iter(self.models.values()))

    def policy(self, data: bytes, options: dict[str, Any], detector: str = "hog") -> list[Box]:
        """Probe, decode as the runner does (before reading the options) and detect."""
        model = self.models[detector]
        image = decode(data, max_side=model.max_side_for(probe(data)))
        faces = model.predict([image], options)[0]["faces"]
        return [(f["x_min"], f["y_min"], f["x_max"], f["y_max"]) for f in faces]

    def reference(self, data: bytes) -> list[Box]:
        pixels = decode(data).pixels
        return [(left, top, right, bottom) for top, right, bottom, left in
                self.fr.face_locations(pixels, number_of_times_to_upsample=1)]

    def before(self, data: bytes) -> list[Box]:
        """The service before issue 17: full size (or ~960 px above 2560 px), upsample 1."""
        info = probe(data)
        image = decode(data, max_side=960 if max(info.width, info.height) > 2560 else None)
        scale = image.scale
        return [(round(left * scale), round(top * scale), round(right * scale),
                 round(bottom * scale)) for top, right, bottom, left in
                self.fr.face_locations(image.pixels, number_of_times_to_upsample=1)]

    def candidates(self, data: bytes) -> list[tuple[Box, float]]:
        """Every detection of the policy's scan down to score -1, original pixels."""
        model = self.model
        image = decode(data, max_side=model.max_side_for(probe(data)))
        detection = model.detection_plan(image, model.parse_options({}))
        scale = image.scale
        return [((round(left * scale), round(top * scale), round(right * scale),
                  round(bottom * scale)), score) for (top, right, bottom, left), score in
                model.candidates(image.pixels, detection, adjust_threshold=-1.0)]


def measure_class(measurer: Measurer, label: str, size: tuple[int, int], photos: int,
                  runs: int) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    pixels = size[0] * size[1]
    min_face = default_min_face_px(pixels)
    info_side = measurer.model.max_side_for(probe(build_photo(size, min_face, 0)[0]))
    decoded = (size if info_side is None else
               (math.ceil(size[0] * info_side / max(size)), math.ceil(size[1] * info_side
                                                                        / max(size))))
    cpu_default, cpu_bare, cpu_reference, cpu_before = [], [], [], []
    hits_ref: list[bool] = []
    hits_before: list[bool] = []
    hits_all: list[bool] = []
    per_detector: dict[str, dict[str, list[Any]]] = {
        d: {"cpu_default": [], "cpu_bare": [], "ref": [], "all": [], "pasted": []}
        for d in measurer.models}
    hits_pasted: list[bool] = []
    found_sizes, missed_sizes, samples = [], [], []
    for seed in range(photos):
        data, pasted = build_photo(size, min_face, seed)
        cpu, _ = cpu_median(lambda d=data: measurer.policy(d, {}), runs)
        cpu_default.append(cpu)
        cpu, found = cpu_median(lambda d=data: measurer.policy(d, {"landmarks": "none"}), runs)
        cpu_bare.append(cpu)
        cpu, reference = cpu_median(lambda d=data: measurer.reference(d), 1)
        cpu_reference.append(cpu)
        cpu, found_before = cpu_median(lambda d=data: measurer.before(d), runs)
        cpu_before.append(cpu)
        big_ref = [b for b in reference if b[3] - b[1] >= min_face]
        hits_ref += matched(big_ref, found)
        hits_before += matched(big_ref, found_before)
        hits_all += matched(reference, found)
        big_pasted = [b for b in pasted if b[3] - b[1] >= min_face]
        for detector, acc in per_detector.items():
            cpu, _ = cpu_median(lambda d=data, k=detector: measurer.policy(d, {}, k), runs)
            acc["cpu_default"].append(cpu)
            cpu, found_d = cpu_median(lambda d=data, k=detector: measurer.policy(
                d, {"landmarks": "none"}, k), runs)
            acc["cpu_bare"].append(cpu)
            acc["ref"] += matched(big_ref, found_d)
            acc["all"] += matched(reference, found_d)
            acc["pasted"] += matched(big_pasted, found_d)
        hits_pasted += matched(big_pasted, found)
        for box, hit in zip(pasted, matched(pasted, found), strict=True):
            (found_sizes if hit else missed_sizes).append(box[3] - box[1])
        truth = list(pasted) + list(reference)
        for box, score in measurer.candidates(data):
            samples.append((score, int(any(iou(box, t) >= 0.5 for t in truth))))
        say(f"{label} photo {seed}: {len(pasted)} faces pasted, reference {len(reference)}, "
            f"found {len(found)}")
    row = {
        "photo": f"{size[0]}x{size[1]}", "megapixels": round(pixels / 1e6, 2),
        "decoded": f"{decoded[0]}x{decoded[1]}", "min_face_px": min_face,
        "faces_pasted": len(found_sizes) + len(missed_sizes),
        "reference_faces_ge_min": len(hits_ref),
        "reference_faces_all_sizes": len(hits_all),
        "recall_vs_reference_all_sizes": (round(sum(hits_all) / len(hits_all), 4)
                                          if hits_all else None),
        "recall_vs_reference": round(sum(hits_ref) / len(hits_ref), 4) if hits_ref else None,
        "recall_vs_pasted_ge_min": (round(sum(hits_pasted) / len(hits_pasted), 4)
                                    if hits_pasted else None),
        "smallest_face_found_px": min(found_sizes) if found_sizes else None,
        "largest_face_missed_px": max(missed_sizes) if missed_sizes else None,
        "cpu_s_default": round(float(np.median(cpu_default)), 3),
        "cpu_s_no_landmarks": round(float(np.median(cpu_bare)), 3),
        "cpu_s_reference_full_res_upsample1": round(float(np.median(cpu_reference)), 3),
        "before_issue17_cpu_s_no_landmarks": round(float(np.median(cpu_before)), 3),
        "before_issue17_recall_vs_reference": (round(sum(hits_before) / len(hits_before), 4)
                                               if hits_before else None),
    }
    row["detectors"] = {detector: {
        "cpu_s_default": round(float(np.median(acc["cpu_default"])), 3),
        "cpu_s_no_landmarks": round(float(np.median(acc["cpu_bare"])), 3),
        "recall_vs_reference": _share(acc["ref"]),
        "recall_vs_reference_all_sizes": _share(acc["all"]),
        "recall_vs_pasted_ge_min": _share(acc["pasted"]),
        "one_face": one_face(measurer, detector, size, min_face, runs),
    } for detector, acc in per_detector.items()}
    say(f"{label}: {row}")
    return row, samples


def _share(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def one_face(measurer: Measurer, detector: str, size: tuple[int, int], min_face: int,
             runs: int) -> dict[str, Any]:
    """CPU-s end to end (probe, decode, detection, 68 landmarks) of a ``size`` photo with one
    face ``ONE_FACE_MULTIPLE`` x the promised size in its middle, and whether it is found."""
    crop = face_crops()[0]
    fx, fy, fw, fh = crop.info["face"]
    scale = ONE_FACE_MULTIPLE * min_face / fh
    scaled = crop.resize((round(crop.width * scale), round(crop.height * scale)),
                         Image.Resampling.LANCZOS)
    canvas = Image.open(FIXTURES / "faces" / BACKGROUNDS[0]).convert("RGB").resize(
        size, Image.Resampling.BICUBIC)
    x, y = (size[0] - scaled.width) // 2, (size[1] - scaled.height) // 2
    canvas.paste(scaled, (x, y))
    truth = (round(x + fx * scale), round(y + fy * scale), round(x + (fx + fw) * scale),
             round(y + (fy + fh) * scale))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    data = out.getvalue()
    cpu, found = cpu_median(lambda: measurer.policy(data, {}, detector), max(runs, 5))
    return {"cpu_s_end_to_end": round(cpu, 4), "face_px": truth[3] - truth[1],
            "found": matched([truth], found)[0], "boxes": len(found)}


def fixture_boxes(measurer: Measurer, detector: str) -> dict[str, Any]:
    """The face fixtures through the plugin with ``detector`` (default options, decoded as
    the runner does): expected faces matched at IoU >= 0.5, and other boxes."""
    expected = json.loads((FIXTURES / "faces" / "expected.json").read_text())["images"]
    hits, extra, per_photo = 0, 0, {}
    total = sum(len(info["faces"]) for info in expected.values())
    for name, info in sorted(expected.items()):
        reference = [(left, top, right, bottom)
                     for top, right, bottom, left in (f["box_trbl"] for f in info["faces"])]
        found = measurer.policy((FIXTURES / "faces" / name).read_bytes(),
                                {"landmarks": "none"}, detector)
        photo_hits = sum(matched(reference, found))
        photo_extra = sum(1 for f in found if not any(iou(f, r) >= 0.5 for r in reference))
        hits, extra = hits + photo_hits, extra + photo_extra
        per_photo[name] = {"faces": len(reference), "matched": photo_hits,
                           "extra": photo_extra,
                           "best_iou": [round(max((iou(r, f) for f in found), default=0), 3)
                                        for r in reference]}
    return {"faces": total, "matched_iou_0.5": hits, "extra_boxes": extra,
            "photos": per_photo}


def imagenet_yunet(measurer: Measurer) -> dict[str, Any]:
    """YuNet (the plugin's default scale) on the 1,300 ImageNet photos: boxes returned, and
    the faces labelled by eye among HOG's candidates (``CALIBRATION_LABELS``) it finds."""
    labels = json.loads(CALIBRATION_LABELS.read_text())["candidates"]
    faces: dict[str, list[Box]] = {}
    for row in labels:
        if row["face"]:
            faces.setdefault(row["image"], []).append(tuple(row["box_ltrb"]))
    returned = found = 0
    for path in sorted(IMAGENET_VAL.iterdir()):
        boxes = measurer.policy(path.read_bytes(), {"landmarks": "none"}, "yunet")
        returned += len(boxes)
        found += sum(matched(faces.get(path.name, []), boxes))
    return {"photos": len(list(IMAGENET_VAL.iterdir())), "boxes_returned": returned,
            "labelled_faces": sum(map(len, faces.values())), "labelled_faces_found": found}


def verdict(rows: dict[str, Any], fixtures: dict[str, Any]) -> dict[str, Any]:
    """Issue 28's rule: YuNet wins only with less CPU-s (default options) and at least HOG's
    recall at every size, and every fixture box matched."""
    checks = {}
    for label, row in rows.items():
        hog, yun = row["detectors"]["hog"], row["detectors"]["yunet"]
        checks[label] = {
            "cpu": yun["cpu_s_default"] < hog["cpu_s_default"],
            "recall": (yun["recall_vs_reference"] or 0) >= (hog["recall_vs_reference"] or 0)
            and (yun["recall_vs_pasted_ge_min"] or 0) >= (hog["recall_vs_pasted_ge_min"] or 0)}
    fixtures_ok = fixtures["yunet"]["matched_iou_0.5"] == fixtures["yunet"]["faces"]
    wins = fixtures_ok and all(c["cpu"] and c["recall"] for c in checks.values())
    return {"per_size": checks, "fixtures_all_matched": fixtures_ok, "yunet_wins": wins}


def imagenet_candidates(measurer: Measurer) -> list[tuple[float, int]]:
    """(score, is_face) of every HOG candidate (upsample 1, score >= -1: how the policy scans
    photos this small) on the 1,300 ImageNet images; faces from the labels file."""
    labels = json.loads(CALIBRATION_LABELS.read_text())["candidates"]
    faces: dict[str, list[Box]] = {}
    for row in labels:
        if row["face"]:
            faces.setdefault(row["image"], []).append(tuple(row["box_ltrb"]))
    samples = []
    for path in sorted(IMAGENET_VAL.iterdir()):
        pixels = decode(path.read_bytes()).pixels
        rects, scores, _ = measurer.fr.api.face_detector.run(pixels, 1, -1.0)
        for rect, score in zip(rects, scores, strict=True):
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            truth = faces.get(path.name, [])
            samples.append((float(score), int(any(iou(box, t) >= 0.5 for t in truth))))
    return samples


def calibration(samples: list[tuple[float, int]]) -> dict[str, Any]:
    scores = np.array([s for s, _ in samples], dtype=np.float64)
    labels = np.array([t for _, t in samples], dtype=np.float64)
    slope, intercept = fit_logistic(scores, labels)
    returned = scores >= 0

    def confidence(score: float) -> float:
        return round(1 / (1 + math.exp(-(slope * score + intercept))), 3)

    return {"candidates": len(samples), "faces": int(labels.sum()),
            "not_faces": int(len(labels) - labels.sum()),
            "not_faces_returned (score >= 0)": int(((labels == 0) & returned).sum()),
            "faces_returned (score >= 0)": int(((labels == 1) & returned).sum()),
            "slope": slope, "intercept": intercept,
            "confidence_at_score": {str(v): confidence(v) for v in (0, 0.25, 0.5, 1, 1.5)},
            "face_score_quantiles_5_25_50": [round(float(q), 3) for q in np.quantile(
                scores[labels == 1], [0.05, 0.25, 0.5])] if labels.any() else None}


def confidence_check(samples: list[tuple[float, int]],
                     slope_intercept: tuple[float, float]) -> dict[str, Any]:
    """On the bench photos' returned detections: share of true faces >= 0.4 (the face
    endpoint's default ``min_confidence``) and of false ones."""
    slope, intercept = slope_intercept
    kept = [(1 / (1 + math.exp(-(slope * s + intercept))), t) for s, t in samples if s >= 0]
    faces = [c for c, t in kept if t]
    others = [c for c, t in kept if not t]
    return {"returned_faces": len(faces), "returned_not_faces": len(others),
            "faces_confidence_ge_0.4": (round(sum(c >= 0.4 for c in faces) / len(faces), 4)
                                        if faces else None),
            "not_faces_confidence_ge_0.4": sum(c >= 0.4 for c in others)}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    measurer = Measurer(detectors)
    rows, samples = {}, []
    for label in [c.strip() for c in args.classes.split(",") if c.strip()]:
        row, found = measure_class(measurer, label, SIZE_CLASSES[label], args.photos, args.runs)
        rows[label] = row
        samples += found
    results.data["classes"] = rows
    fixtures = {d: fixture_boxes(measurer, d) for d in detectors}
    results.data["fixtures"] = fixtures
    for detector, counts in fixtures.items():
        say(f"fixtures, {detector}: {counts['matched_iou_0.5']} of {counts['faces']} faces "
            f"matched, {counts['extra_boxes']} other boxes")
    if "yunet" in detectors:
        results.data["yunet_on_imagenet"] = imagenet_yunet(measurer)
        say(f"YuNet on ImageNet: {results.data['yunet_on_imagenet']}")
    if {"hog", "yunet"} <= set(detectors):
        results.data["verdict"] = verdict(rows, fixtures)
        say(f"verdict: {json.dumps(results.data['verdict'])}")
    if not args.no_calibration:
        say("calibration: HOG candidates on the ImageNet images")
        fitted = calibration(imagenet_candidates(measurer))
        results.data["hog_calibration"] = fitted
        results.data["hog_calibration_check_on_bench_photos"] = confidence_check(
            samples, (fitted["slope"], fitted["intercept"]))
        say(json.dumps(results.data["hog_calibration"]))
        say(json.dumps(results.data["hog_calibration_check_on_bench_photos"]))
    results.data["goals"] = {"cpu_s_per_image": 0.25, "recall": 0.97,
                             "yunet_default_12mp_one_face_cpu_s": 0.08,
                             "yunet_default_recall": 0.99}
    results.data["pixel_budget"] = measurer.model.config.pixel_budget
    plots.bars(results.plot_path("cpu"), {
        label: {"visionq default (landmarks 68)": row["cpu_s_default"],
                "visionq, no landmarks": row["cpu_s_no_landmarks"],
                "before issue 17, no landmarks": row["before_issue17_cpu_s_no_landmarks"],
                "face_recognition full res, upsample 1": row[
                    "cpu_s_reference_full_res_upsample1"]} for label, row in rows.items()},
        "Face detection CPU-s per image by photo size (lower is better)", "CPU-s per image",
        log=True)
    plots.bars(results.plot_path("detectors_cpu"), {
        label: {f"{d}, default (68 landmarks)": v["cpu_s_default"]
                for d, v in row["detectors"].items()}
        | {f"{d}, one face end to end": v["one_face"]["cpu_s_end_to_end"]
           for d, v in row["detectors"].items()}
        for label, row in rows.items()},
        "CPU-s per image by face detector and photo size (lower is better)", "CPU-s per image",
        log=True)
    plots.bars(results.plot_path("detectors_recall"), {
        label: {f"{d} vs full res": v["recall_vs_reference"] or 0
                for d, v in row["detectors"].items()}
        | {f"{d} vs pasted": v["recall_vs_pasted_ge_min"] or 0
           for d, v in row["detectors"].items()}
        for label, row in rows.items()}, "Recall at the promised size by face detector",
        "recall")
    plots.bars(results.plot_path("recall"), {
        label: {"recall vs full res (faces >= min_face_px)": row["recall_vs_reference"] or 0,
                "recall vs pasted (faces >= min_face_px)": row["recall_vs_pasted_ge_min"] or 0}
        for label, row in rows.items()}, "Face recall at the promised size", "recall")
    results.finish()
    return results.data
