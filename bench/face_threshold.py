"""``python -m bench face-threshold``: false accepts and false rejects of the face match
threshold (``VISIONQ_FACE_TOLERANCE``, face_recognition's 0.6 by default).

Faces with known identities, encoded as the service encodes them (the face plugin with
default options and ``encodings: true``: its decode-scale policy's boxes, 5-point aligner,
one jitter), each picked by its overlap with the labelled box:

- ``../shared/fixtures/faces``: Obama in 7 distinct photos, Biden in 4, one stranger
  (``expected.json`` notes).  Resized copies of the same photo (``obama_small``,
  ``obama-240p``, ``32bit.png``) are left out: they would count as easy genuine pairs.
- 27 faces in ``../shared/fixtures/imagenet_val`` (labelled in
  ``bench/faces_calibration_labels.json``), each a different person: strangers.
- ``face_recognition`` ships no example images in its wheel (only its git repository
  has them), so none come from installed packages.

Reported per threshold: FRR = share of same-person pairs whose distance is above it (a
registered person answered "unknown"); FAR = share of different-person pairs at or below
it (a stranger matched to someone); and the open-set case the service meets: each
stranger against the registered Obama and Biden faces (matched to either = false accept).
Small sample: 11 genuine faces of 2 people, so FRR has a coarse resolution; FAR rests on
~600 pairs of ~30 people.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.faces import CALIBRATION_LABELS, IMAGENET_VAL
from bench.harness import plots
from bench.harness.common import FIXTURES, Run, iou, say
from visionq.imaging import decode, probe

IDENTITIES: dict[str, list[tuple[str, int]]] = {
    "obama": [("obama.jpg", 0), ("obama2.jpg", 0), ("obama3.jpg", 0),
              ("obama_partial_face.jpg", 0), ("obama_partial_face2.jpg", 0),
              ("two_people.jpg", 1), ("obama_and_biden.jpg", 1)],
    "biden": [("biden.jpg", 0), ("biden2.jpg", 0), ("two_people.jpg", 0),
              ("obama_and_biden.jpg", 0)],
    "stranger_obama_and_biden_2": [("obama_and_biden.jpg", 2)],
}
"""Fixture faces by person (``faces/expected.json``: face index in face_locations order)."""
REGISTERED = ("obama", "biden")
THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(10))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="face_threshold")


class Encoder:
    """Encodings as the service computes them: the face plugin's default detection (decode
    policy included) with ``encodings: true``; the face is the detection that overlaps the
    labelled box best."""

    def __init__(self) -> None:
        from workers.plugins.face_recognition_model import FaceRecognitionModel

        self.model = FaceRecognitionModel()
        self.model.load()

    def encode(self, data: bytes, box_ltrb: Sequence[int]) -> np.ndarray | None:
        image = decode(data, max_side=self.model.max_side_for(probe(data)))
        faces = self.model.predict([image], {"encodings": True, "landmarks": "none"})[0]["faces"]
        scored = [(iou(box_ltrb, (f["x_min"], f["y_min"], f["x_max"], f["y_max"])), f)
                  for f in faces]
        overlap, face = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if face is None or overlap < 0.3:
            return None
        return np.asarray(face["encoding"], dtype=np.float64)


def known_faces(encoder: Encoder) -> tuple[list[tuple[str, str, np.ndarray]], list[str]]:
    """(person, source, encoding) for every face with an identity, and the sources the
    service's detection did not find."""
    expected = json.loads((FIXTURES / "faces" / "expected.json").read_text())["images"]
    wanted: list[tuple[str, str, bytes, tuple[int, int, int, int]]] = []
    for person, sources in IDENTITIES.items():
        for name, index in sources:
            top, right, bottom, left = expected[name]["faces"][index]["box_trbl"]
            wanted.append((person, f"{name}#{index}", (FIXTURES / "faces" / name).read_bytes(),
                           (left, top, right, bottom)))
    labels = json.loads(CALIBRATION_LABELS.read_text())["candidates"]
    for number, row in enumerate(r for r in labels if r["face"]):
        wanted.append((f"imagenet_{number}", row["image"],
                       (IMAGENET_VAL / row["image"]).read_bytes(), tuple(row["box_ltrb"])))
    faces, missed = [], []
    for person, source, data, box in wanted:
        encoding = encoder.encode(data, box)
        if encoding is None:
            missed.append(source)
        else:
            faces.append((person, source, encoding))
    return faces, missed


def rates(faces: list[tuple[str, str, np.ndarray]]) -> dict[str, Any]:
    genuine, impostor = [], []
    for (pa, _, ea), (pb, _, eb) in itertools.combinations(faces, 2):
        (genuine if pa == pb else impostor).append(float(np.linalg.norm(ea - eb)))
    gallery = [(p, e) for p, _, e in faces if p in REGISTERED]
    strangers = [min(float(np.linalg.norm(e - g)) for _, g in gallery)
                 for p, _, e in faces if p not in REGISTERED]
    genuine_a, impostor_a, strangers_a = map(np.array, (genuine, impostor, strangers))
    table = [{"threshold": t,
              "frr_same_person_pairs": round(float((genuine_a > t).mean()), 4),
              "far_different_person_pairs": round(float((impostor_a <= t).mean()), 4),
              "strangers_matched_to_a_registered_person": round(
                  float((strangers_a <= t).mean()), 4)} for t in THRESHOLDS]
    return {"faces": len(faces), "people": len({p for p, _, _ in faces}),
            "same_person_pairs": len(genuine), "different_person_pairs": len(impostor),
            "strangers_vs_registered": len(strangers),
            "same_person_distance_max": round(max(genuine), 3),
            "different_person_distance_min": round(min(impostor), 3),
            "closest_stranger_to_registered": round(min(strangers), 3),
            "table": table}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    faces, missed = known_faces(Encoder())
    say(f"{len(faces)} faces encoded; not detected by the service: {missed}")
    results.data.update(rates(faces))
    results.data["not_detected"] = missed
    for row in results.data["table"]:
        say(json.dumps(row))
    plots.bars(results.plot_path("rates"), {
        str(row["threshold"]): {"false reject (same person)": row["frr_same_person_pairs"],
                                "false accept (different people)": row[
                                    "far_different_person_pairs"],
                                "stranger matched to registered": row[
                                    "strangers_matched_to_a_registered_person"]}
        for row in results.data["table"]},
        "Face match threshold: errors by distance threshold", "share of pairs")
    results.finish()
    return results.data
