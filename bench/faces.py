"""``python -m bench faces``: the face decode-scale policy's cost and recall per photo size.

Photos of 0.3, 2, 8 and 12 MP with the fixtures' faces pasted around the promised
``min_face_px``; per face detector (``--detectors``, each as a worker with that
``VISIONQ_FACE_DETECTOR``): CPU-s per image, recall at IoU >= 0.5 against
``face_recognition`` at full resolution and the pasted boxes, one face end to end, the
fixture boxes; then HOG's confidence calibration on the 1,300 ImageNet photos. Method,
figures and goals: docs/models.md (face detection cost and recall, YuNet, face confidence).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from bench.harness import plots
from bench.harness.common import Run, iou, say
from bench.harness.evals import (
    FACES,
    IMAGENET_VAL,
    Box,
    background,
    detect_faces,
    expected_faces,
    face_crops,
    face_model,
    jpeg,
    labelled_faces,
    ltrb,
    matched,
    paste,
    scaled_face,
    share,
    timed,
    worker_decode,
)
from visionq.imaging import decode, probe
from workers.plugins.face_scale import default_min_face_px

SIZE_CLASSES: dict[str, tuple[int, int]] = {
    "0.3 MP": (640, 480), "2 MP": (1632, 1224), "8 MP": (3264, 2448), "12 MP": (4000, 3000)}
FACE_MULTIPLES = (0.6, 0.8, 1.0, 1.15, 1.4, 2.0, 2.8)
"""Pasted face heights as multiples of the promised ``min_face_px`` (below 1: informative)."""
BACKGROUNDS = ("000000000009.jpg", "000000000025.jpg", "000000000034.jpg")
DETECTORS = ("hog", "yunet")
ONE_FACE_MULTIPLE = 2.0
"""The one-face photos' face height, in promised ``min_face_px``."""


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
    canvas = background(BACKGROUNDS[seed % len(BACKGROUNDS)], size)
    crops = face_crops()
    boxes: list[Box] = []
    x = y = row_height = 0
    for index in range(10_000):
        crop = crops[(index + seed) % len(crops)]
        face = max(20, round(FACE_MULTIPLES[(index + seed) % len(FACE_MULTIPLES)] * min_face))
        scaled, scale = scaled_face(crop, face)
        if x + scaled.width > width:
            x, y, row_height = 0, y + row_height + rng.randint(0, 8), 0
        if y + scaled.height > height:
            break
        boxes.append(paste(canvas, scaled, (x, y), crop, scale))
        x += scaled.width + rng.randint(0, 8)
        row_height = max(row_height, scaled.height)
    return jpeg(canvas), boxes


def one_face_photo(size: tuple[int, int], min_face: int) -> tuple[bytes, Box]:
    """A ``size`` photo with one face ``ONE_FACE_MULTIPLE`` x ``min_face`` in its middle."""
    crop = face_crops()[0]
    scaled, scale = scaled_face(crop, ONE_FACE_MULTIPLE * min_face)
    canvas = background(BACKGROUNDS[0], size)
    at = ((size[0] - scaled.width) // 2, (size[1] - scaled.height) // 2)
    truth = paste(canvas, scaled, at, crop, scale)
    return jpeg(canvas), truth


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

        self.fr = face_recognition
        self.models = {detector: face_model(detector) for detector in detectors}
        self.main = "hog" if "hog" in self.models else next(iter(self.models))
        """The detector of the per-size figures outside ``detectors`` and of the candidates."""
        self.model = self.models[self.main]

    def policy(self, data: bytes, options: dict[str, Any], detector: str = "hog") -> list[Box]:
        """Probe, decode as the runner does (before reading the options) and detect."""
        return detect_faces(self.models[detector], data, options)

    def reference(self, data: bytes) -> list[Box]:
        pixels = decode(data).pixels
        return [ltrb(found) for found in self.fr.face_locations(pixels,
                                                                  number_of_times_to_upsample=1)]

    def before(self, data: bytes) -> list[Box]:
        """The service before issue 17: full size (or ~960 px above 2560 px), upsample 1."""
        info = probe(data)
        image = decode(data, max_side=960 if max(info.width, info.height) > 2560 else None)
        return [ltrb(found, image.scale) for found in
                self.fr.face_locations(image.pixels, number_of_times_to_upsample=1)]

    def candidates(self, data: bytes) -> list[tuple[Box, float]]:
        """Every detection of the policy's scan down to score -1, original pixels."""
        model = self.model
        image = worker_decode(model, data)
        detection = model.detection_plan(image, model.parse_options({}))
        return [(ltrb(found, image.scale), score) for found, score in
                model.candidates(image.pixels, detection, adjust_threshold=-1.0)]


def _median(values: list[float], digits: int = 3) -> float:
    return round(float(np.median(values)), digits)


def _figures(acc: dict[str, list[Any]]) -> dict[str, Any]:
    """One detector's CPU-s (median) and recall in a size class."""
    return {"cpu_s_default": _median(acc["cpu_default"]),
            "cpu_s_no_landmarks": _median(acc["cpu_bare"]),
            "recall_vs_reference": share(acc["ref"]),
            "recall_vs_reference_all_sizes": share(acc["all"]),
            "recall_vs_pasted_ge_min": share(acc["pasted"])}


def measure_class(measurer: Measurer, label: str, size: tuple[int, int], photos: int,
                  runs: int) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """One size class: per detector CPU-s and recall (the main detector's also at the top
    level, with the cost of ``face_recognition`` and of the service before issue 17), and
    the main detector's candidates labelled by the pasted and reference boxes."""
    pixels = size[0] * size[1]
    min_face = default_min_face_px(pixels)
    info_side = measurer.model.max_side_for(probe(build_photo(size, min_face, 0)[0]))
    decoded = (size if info_side is None else
               (math.ceil(size[0] * info_side / max(size)), math.ceil(size[1] * info_side
                                                                        / max(size))))
    per_detector: dict[str, dict[str, list[Any]]] = {
        d: {"cpu_default": [], "cpu_bare": [], "ref": [], "all": [], "pasted": []}
        for d in measurer.models}
    cpu_reference, cpu_before, hits_before = [], [], []
    found_sizes, missed_sizes, samples = [], [], []
    for seed in range(photos):
        data, pasted = build_photo(size, min_face, seed)
        cpu, _, reference = timed(partial(measurer.reference, data), 1)
        cpu_reference.append(cpu)
        big_ref = [b for b in reference if b[3] - b[1] >= min_face]
        big_pasted = [b for b in pasted if b[3] - b[1] >= min_face]
        cpu, _, found_before = timed(partial(measurer.before, data), runs)
        cpu_before.append(cpu)
        hits_before += matched(big_ref, found_before)
        found = {}
        for detector, acc in per_detector.items():
            acc["cpu_default"].append(timed(partial(measurer.policy, data, {}, detector),
                                            runs)[0])
            cpu, _, found[detector] = timed(partial(measurer.policy, data,
                                                    {"landmarks": "none"}, detector), runs)
            acc["cpu_bare"].append(cpu)
            acc["ref"] += matched(big_ref, found[detector])
            acc["all"] += matched(reference, found[detector])
            acc["pasted"] += matched(big_pasted, found[detector])
        for box, hit in zip(pasted, matched(pasted, found[measurer.main]), strict=True):
            (found_sizes if hit else missed_sizes).append(box[3] - box[1])
        truth = list(pasted) + list(reference)
        samples += [(score, int(matched([box], truth)[0]))
                    for box, score in measurer.candidates(data)]
        say(f"{label} photo {seed}: {len(pasted)} faces pasted, reference {len(reference)}, "
            f"found {len(found[measurer.main])}")
    main = per_detector[measurer.main]
    row = {
        "photo": f"{size[0]}x{size[1]}", "megapixels": round(pixels / 1e6, 2),
        "decoded": f"{decoded[0]}x{decoded[1]}", "min_face_px": min_face,
        "faces_pasted": len(found_sizes) + len(missed_sizes),
        "reference_faces_ge_min": len(main["ref"]),
        "reference_faces_all_sizes": len(main["all"]), **_figures(main),
        "smallest_face_found_px": min(found_sizes) if found_sizes else None,
        "largest_face_missed_px": max(missed_sizes) if missed_sizes else None,
        "cpu_s_reference_full_res_upsample1": _median(cpu_reference),
        "before_issue17_cpu_s_no_landmarks": _median(cpu_before),
        "before_issue17_recall_vs_reference": share(hits_before),
    }
    one_face, truth = one_face_photo(size, min_face)
    row["detectors"] = {}
    for detector, acc in per_detector.items():
        cpu, _, found_one = timed(partial(measurer.policy, one_face, {}, detector),
                                  max(runs, 5))
        row["detectors"][detector] = {**_figures(acc), "one_face": {
            "cpu_s_end_to_end": round(cpu, 4), "face_px": truth[3] - truth[1],
            "found": matched([truth], found_one)[0], "boxes": len(found_one)}}
    say(f"{label}: {row}")
    return row, samples


def fixture_boxes(measurer: Measurer, detector: str) -> dict[str, Any]:
    """The face fixtures through the plugin with ``detector`` (default options, decoded as
    the runner does): expected faces matched at IoU >= 0.5, and other boxes."""
    expected = expected_faces()
    per_photo = {}
    for name, reference in sorted(expected.items()):
        found = measurer.policy((FACES / name).read_bytes(), {"landmarks": "none"}, detector)
        per_photo[name] = {"faces": len(reference), "matched": sum(matched(reference, found)),
                           "extra": len(found) - sum(matched(found, reference)),
                           "best_iou": [round(max((iou(r, f) for f in found), default=0), 3)
                                        for r in reference]}
    return {"faces": sum(map(len, expected.values())),
            "matched_iou_0.5": sum(p["matched"] for p in per_photo.values()),
            "extra_boxes": sum(p["extra"] for p in per_photo.values()), "photos": per_photo}


def imagenet_yunet(measurer: Measurer) -> dict[str, Any]:
    """YuNet (the plugin's default scale) on the 1,300 ImageNet photos: boxes returned, and
    the faces labelled by eye among HOG's candidates it finds."""
    faces = labelled_faces()
    paths = sorted(IMAGENET_VAL.iterdir())
    returned = found = 0
    for path in paths:
        boxes = measurer.policy(path.read_bytes(), {"landmarks": "none"}, "yunet")
        returned += len(boxes)
        found += sum(matched(faces.get(path.name, []), boxes))
    return {"photos": len(paths), "boxes_returned": returned,
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
    faces = labelled_faces()
    samples = []
    for path in sorted(IMAGENET_VAL.iterdir()):
        pixels = decode(path.read_bytes()).pixels
        rects, scores, _ = measurer.fr.api.face_detector.run(pixels, 1, -1.0)
        for rect, score in zip(rects, scores, strict=True):
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            samples.append((float(score), int(matched([box], faces.get(path.name, []))[0])))
    return samples


def _confidence(score: float, slope: float, intercept: float) -> float:
    return 1 / (1 + math.exp(-(slope * score + intercept)))


def calibration(samples: list[tuple[float, int]]) -> dict[str, Any]:
    scores = np.array([s for s, _ in samples], dtype=np.float64)
    labels = np.array([t for _, t in samples], dtype=np.float64)
    slope, intercept = fit_logistic(scores, labels)
    returned = scores >= 0
    return {"candidates": len(samples), "faces": int(labels.sum()),
            "not_faces": int(len(labels) - labels.sum()),
            "not_faces_returned (score >= 0)": int(((labels == 0) & returned).sum()),
            "faces_returned (score >= 0)": int(((labels == 1) & returned).sum()),
            "slope": slope, "intercept": intercept,
            "confidence_at_score": {str(v): round(_confidence(v, slope, intercept), 3)
                                    for v in (0, 0.25, 0.5, 1, 1.5)},
            "face_score_quantiles_5_25_50": [round(float(q), 3) for q in np.quantile(
                scores[labels == 1], [0.05, 0.25, 0.5])] if labels.any() else None}


def confidence_check(samples: list[tuple[float, int]],
                     slope_intercept: tuple[float, float]) -> dict[str, Any]:
    """On the bench photos' returned detections: share of true faces >= 0.4 (the face
    endpoint's default ``min_confidence``) and of false ones."""
    kept = [(_confidence(s, *slope_intercept), t) for s, t in samples if s >= 0]
    faces = [c >= 0.4 for c, t in kept if t]
    others = [c >= 0.4 for c, t in kept if not t]
    return {"returned_faces": len(faces), "returned_not_faces": len(others),
            "faces_confidence_ge_0.4": share(faces),
            "not_faces_confidence_ge_0.4": sum(others)}


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
