"""``python -m bench face-openset``: open-set face recognition as deployments use it.

Enrols the fixtures' two people (every split of their photo groups; ``household``: plus
real ImageNet faces), presents their held-out photos and every face the service finds in
the 1,300 imagenet_val photos as strangers, and sweeps each naming rule's distance
threshold: false accepts vs false rejects (DET plots), the default chosen by ``choose``.
Method, protocols and figures: docs/models.md#face-recognition-threshold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import plots
from bench.harness.common import Run, iou, say
from bench.harness.evals import (
    FACES,
    IMAGENET_VAL,
    box_of,
    expected_faces,
    face_model,
    labelled_faces,
    matched,
    say_table,
    worker_decode,
)
from visionq.options import FACE_DETECTORS

GROUPS: dict[str, list[list[tuple[str, int]]]] = {
    "obama": [
        [("obama.jpg", 0), ("obama_partial_face.jpg", 0), ("obama_partial_face2.jpg", 0),
         ("obama-240p.jpg", 0)],
        [("obama2.jpg", 0)],
        [("obama3.jpg", 0)],
        [("two_people.jpg", 1)],
        [("obama_and_biden.jpg", 1)],
    ],
    "biden": [
        [("biden.jpg", 0), ("two_people.jpg", 0)],
        [("biden2.jpg", 0)],
        [("obama_and_biden.jpg", 0)],
    ],
}
"""Fixture faces per person (``faces/expected.json`` face index), in photo groups: the
partial faces are crops of obama.jpg, obama-240p is 0.13 from it, Biden in two_people is
0.07 from biden.jpg.  Resized copies (obama_small, 32bit.png) are left out."""
FIXTURE_STRANGERS = [("obama_and_biden.jpg", 2)]
THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(51))
MARGINS = (0.05, 0.10, 0.15)
SIZE_GATES = (40, 50, 60, 80)
JSON_FROM, JSON_TO = 0.38, 0.62
LISTED = (0.47, 0.5, 0.55, 0.6)
"""Thresholds whose named strangers are listed in the JSON (the rest: counts only)."""
MEMBER_MIN_PX = 60
"""Household members are enrolled from ImageNet faces at least this high (a household
enrols good photos; strangers come at any size)."""
WIDER_BY = 0.02
"""A rule with more parts must widen the safe interval by more than this (two sweep steps)
to be chosen over a simpler one."""
SHARPNESS_GATES = (20.0, 50.0, 100.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None,
                        help="results name (default: face_openset for hog, "
                             "face_openset_<detector> for another)")
    parser.add_argument("--enrol", type=int, default=2,
                        help="photo groups enrolled per person (all combinations are run)")
    parser.add_argument("--household", type=int, default=5,
                        help="people enrolled in the household protocol: Obama, Biden and "
                             "N-2 real ImageNet faces (one photo each)")
    parser.add_argument("--draws", type=int, default=10,
                        help="random household draws per fixture split")
    parser.add_argument("--limit-images", type=int, default=0,
                        help="only the first N imagenet_val photos (0: all 1,300)")
    parser.add_argument("--face-detector", choices=FACE_DETECTORS, default=None,
                        help="the face detector whose boxes are encoded, as a worker's "
                             "VISIONQ_FACE_DETECTOR (default: this environment's, yunet)")


@dataclass
class Face:
    who: str
    source: str
    encoding: np.ndarray
    size_px: int
    sharpness: float
    group: int = -1
    real: bool = True


def found_faces(model: Any, data: bytes) -> list[dict[str, Any]]:
    """Faces as a ``task=face`` job with ``encodings: true`` gets them."""
    return model.predict([worker_decode(model, data)],
                         {"encodings": True, "landmarks": "none"})[0]["faces"]


def _face(who: str, source: str, found: dict[str, Any], group: int = -1) -> Face:
    return Face(who, source, np.asarray(found["encoding"], dtype=np.float64),
                int(found["quality"]["size_px"]), float(found["quality"]["sharpness"]), group)


def fixture_faces(model: Any) -> tuple[list[Face], list[Face], list[str]]:
    """(genuine faces with their group, fixture strangers, sources not detected)."""
    expected = expected_faces()
    cache: dict[str, list[dict[str, Any]]] = {}

    def pick(name: str, index: int) -> dict[str, Any] | None:
        if name not in cache:
            cache[name] = found_faces(model, (FACES / name).read_bytes())
        scored = [(iou(expected[name][index], box_of(f)), f) for f in cache[name]]
        overlap, face = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        return face if face is not None and overlap >= 0.3 else None

    wanted = [(who, number, name, index) for who, groups in GROUPS.items()
              for number, group in enumerate(groups) for name, index in group]
    wanted += [("stranger", -1, name, index) for name, index in FIXTURE_STRANGERS]
    genuine, strangers, missed = [], [], []
    for who, number, name, index in wanted:
        found = pick(name, index)
        if found is None:
            missed.append(f"{name}#{index}")
        else:
            face = _face(who, f"{name}#{index}", found, number)
            (strangers if who == "stranger" else genuine).append(face)
    return genuine, strangers, missed


def imagenet_faces(model: Any, limit: int = 0) -> tuple[list[Face], int, int]:
    """Every face found in imagenet_val, (faces, labelled true faces among them, photos)."""
    labels = labelled_faces()
    paths = sorted(IMAGENET_VAL.iterdir())
    if limit:
        paths = paths[:limit]
    faces, true_faces, started = [], 0, time.monotonic()
    for number, path in enumerate(paths, 1):
        for found in found_faces(model, path.read_bytes()):
            labelled = matched([box_of(found)], labels.get(path.name, []))[0]
            true_faces += labelled
            face = _face("stranger", f"{path.name}{'' if labelled else ' (not a face)'}", found)
            face.real = labelled
            faces.append(face)
        if number % 100 == 0 or number == len(paths):
            say(f"imagenet_val: {number}/{len(paths)} photos, {len(faces)} faces found, "
                f"{time.monotonic() - started:.0f} s")
    return faces, true_faces, len(paths)


@dataclass(frozen=True)
class Rule:
    name: str
    template: str = "nearest"  # or "mean"
    margin: float = 0.0
    min_size_px: int = 0
    min_sharpness: float = 0.0

    @property
    def simplicity(self) -> int:
        return (self.template != "nearest") + (self.margin > 0) + (self.min_size_px > 0) + (
            self.min_sharpness > 0)


def rules() -> list[Rule]:
    out = [Rule("nearest"), Rule("mean", template="mean")]
    out += [Rule(f"margin {m:.2f}", margin=m) for m in MARGINS]
    out += [Rule(f"gate size {s}", min_size_px=s) for s in SIZE_GATES]
    out += [Rule(f"gate sharp {b:g}", min_sharpness=b) for b in SHARPNESS_GATES]
    out += [Rule("mean + margin 0.05", template="mean", margin=0.05)]
    return out


def person_distances(gallery: dict[str, np.ndarray], probes: np.ndarray,
                     template: str) -> tuple[list[str], np.ndarray]:
    """(people, distances probes x people): nearest enrolled encoding or the mean's."""
    people = sorted(gallery)
    columns = []
    for who in people:
        known = gallery[who]
        if template == "mean":
            columns.append(np.linalg.norm(probes - known.mean(axis=0), axis=1))
        else:
            columns.append(np.linalg.norm(probes[:, None, :] - known[None], axis=2).min(axis=1))
    return people, np.stack(columns, axis=1)


def decide(rule: Rule, gallery: dict[str, np.ndarray], faces: Sequence[Face],
           encodings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(name given to each face at each threshold: thresholds x faces, -1 = unknown;
    the people's order)."""
    people, distances = person_distances(gallery, encodings, rule.template)
    order = np.argsort(distances, axis=1)
    rows = np.arange(len(faces))
    best = distances[rows, order[:, 0]]
    second = distances[rows, order[:, 1]] if len(people) > 1 else np.full(len(faces), np.inf)
    passes = np.array([f.size_px >= rule.min_size_px and f.sharpness >= rule.min_sharpness
                       for f in faces], dtype=bool) & (second - best >= rule.margin)
    thresholds = np.asarray(THRESHOLDS)[:, None]
    named = passes[None, :] & (best[None, :] <= thresholds)
    return np.where(named, order[:, 0][None, :], -1), np.asarray(people)


def splits(genuine: list[Face], enrol: int) -> list[tuple[dict[str, np.ndarray], list[Face]]]:
    """Every gallery that enrols ``enrol`` groups per person: (gallery, held-out probes)."""
    choices = [[(who, set(c)) for c in itertools.combinations(range(len(groups)),
                                                              min(enrol, len(groups) - 1))]
               for who, groups in GROUPS.items()]
    out = []
    for combo in itertools.product(*choices):
        enrolled = dict(combo)
        gallery = {who: np.stack([f.encoding for f in genuine
                                  if f.who == who and f.group in groups])
                   for who, groups in enrolled.items()}
        probes = [f for f in genuine if f.group not in enrolled[f.who]]
        out.append((gallery, probes))
    return out


def galleries(genuine: list[Face], strangers: list[Face], enrol: int, household: int,
              draws: int, seed: int = 0) -> list[tuple[dict[str, np.ndarray], list[Face],
                                                        list[int]]]:
    """(gallery, genuine probes, indices of the strangers presented).  ``household`` > 2:
    each fixture split also enrols ``household - 2`` real ImageNet faces (one photo each,
    ``draws`` random draws), which are then not presented as strangers."""
    rng = np.random.default_rng(seed)
    real = [i for i, f in enumerate(strangers) if f.real and f.size_px >= MEMBER_MIN_PX]
    out = []
    for gallery, probes in splits(genuine, enrol):
        extra = min(household - len(gallery), len(real))
        if extra <= 0:
            out.append((gallery, probes, list(range(len(strangers)))))
            continue
        for _ in range(draws):
            members = set(rng.choice(real, size=extra, replace=False).tolist())
            bigger = {**gallery, **{f"member_{i}": strangers[i].encoding[None]
                                    for i in members}}
            out.append((bigger, probes, [i for i in range(len(strangers))
                                         if i not in members]))
    return out


def evaluate(genuine: list[Face], strangers: list[Face], enrol: int, household: int,
             draws: int) -> dict[str, Any]:
    cases = galleries(genuine, strangers, enrol, household, draws)
    all_strangers = np.stack([f.encoding for f in strangers])
    curves: dict[str, list[dict[str, Any]]] = {}
    n = len(THRESHOLDS)
    for rule in rules():
        correct, wrong, rejected = np.zeros(n), np.zeros(n), np.zeros(n)
        named, presented, genuine_total = np.zeros(n), 0, 0
        ever = np.zeros((n, len(strangers)), dtype=bool)
        for gallery, probes, presented_idx in cases:
            answers, people = decide(rule, gallery, probes,
                                     np.stack([f.encoding for f in probes]))
            truth = np.array([list(people).index(f.who) for f in probes])
            genuine_total += len(probes)
            correct += (answers == truth[None, :]).sum(axis=1)
            rejected += (answers == -1).sum(axis=1)
            wrong += ((answers != -1) & (answers != truth[None, :])).sum(axis=1)
            shown = [strangers[i] for i in presented_idx]
            if not shown:
                continue
            answers, _ = decide(rule, gallery, shown, all_strangers[presented_idx])
            presented += len(shown)
            named += (answers != -1).sum(axis=1)
            ever[:, presented_idx] |= answers != -1
        rows = []
        for k, threshold in enumerate(THRESHOLDS):
            sources = sorted(strangers[i].source for i in np.flatnonzero(ever[k]))
            named_list = {"ever_named": sources[:10]} if threshold in LISTED else {}
            rows.append({"threshold": threshold,
                         "genuine_correct": round(float(correct[k]) / genuine_total, 4),
                         "genuine_wrong_name": round(float(wrong[k]) / genuine_total, 4),
                         "genuine_rejected": round(float(rejected[k]) / genuine_total, 4),
                         "far": round(float(named[k]) / max(presented, 1), 5),
                         "strangers_named": int(named[k]),
                         "strangers_ever_named": len(sources), **named_list})
        curves[rule.name] = rows
    return {"galleries": len(cases), "stranger_presentations": presented,
            "genuine_probes_per_gallery": round(genuine_total / len(cases), 2),
            "curves": curves}


def safe_interval(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(smallest threshold naming >= 95 % of the genuine probes correctly, largest at which
    no stranger is ever named)."""
    low = min((r["threshold"] for r in rows if r["genuine_correct"] >= 0.95), default=None)
    high = max((r["threshold"] for r in rows if r["strangers_ever_named"] == 0), default=None)
    return low, high


def choose(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The rule with the widest ``safe_interval`` (a rule with more parts only if wider by
    more than ``WIDER_BY``), at the interval's middle, so that both kinds of error keep the
    same distance margin on this small sample."""
    by_name = {rule.name: rule for rule in rules()}
    best: tuple[float, int, str, float, float] | None = None
    for name, rows in curves.items():
        low, high = safe_interval(rows)
        if low is None or high is None or high < low:
            continue
        key = (round(high - low, 2), -by_name[name].simplicity, name, low, high)
        if best is None:
            best = key
            continue
        simpler = key[1] > best[1]
        wider = key[0] - best[0]
        if (wider > WIDER_BY or (wider > 0 and not key[1] < best[1])
                or (simpler and wider >= -WIDER_BY)):
            best = key
    if best is None:
        return {}
    width, _, name, low, high = best
    middle = round((low + high) / 2, 2)
    row = min(curves[name], key=lambda r: abs(r["threshold"] - middle))
    rule = by_name[name]
    return {"rule": name, "safe_from": low, "safe_to": high, "threshold": row["threshold"],
            "template": rule.template, "margin": rule.margin,
            "min_size_px": rule.min_size_px, "min_sharpness": rule.min_sharpness, **row}


def summary_rows(curves: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per rule: its safe interval (>= 95 % genuine named .. no stranger named) and the
    figures at 0.5 and 0.6."""
    out = []
    for name, rows in curves.items():
        low, high = safe_interval(rows)
        at = {r["threshold"]: r for r in rows}
        out.append({"rule": name, "genuine_95_from": low, "no_stranger_up_to": high,
                    **{f"{key}_at_{t}": at[t][key] for t in (0.5, 0.55, 0.6)
                       for key in ("genuine_correct", "far", "strangers_ever_named")}})
    return out


def compact(curves: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The curves as the JSON keeps them (the plots have every threshold): 0.38-0.62, the
    wrong-name rate only where it is not 0."""
    kept = {}
    for name, rows in curves.items():
        kept[name] = [{k: v for k, v in row.items()
                       if k not in ("genuine_rejected", "strangers_named")
                       and not (k == "genuine_wrong_name" and v == 0)}
                      for row in rows if JSON_FROM <= row["threshold"] <= JSON_TO]
    return kept


def det_plot(path: Any, curves: dict[str, list[dict[str, Any]]], presentations: int,
             protocol: str) -> None:
    """Left: DET (false accept rate, log, vs false reject + wrong name rate) per rule.
    Right: both rates against the threshold, where the safe interval shows."""
    plt = plots.plt

    fig, (det, sweep) = plt.subplots(1, 2, figsize=(13, 5.5))
    floor = 0.3 / max(presentations, 1)
    for name, rows in curves.items():
        far = [max(r["far"], floor) for r in rows]
        frr = [1.0 - r["genuine_correct"] for r in rows]
        det.plot(far, frr, marker=".", markersize=3, label=name)
        line, = sweep.plot([r["threshold"] for r in rows], far, label=f"{name}: FAR")
        sweep.plot([r["threshold"] for r in rows], [max(v, floor) for v in frr], linestyle=":",
                   color=line.get_color())
    det.set_xscale("log")
    det.set_xlabel(f"false accept rate (stranger named; {presentations} presentations; "
                   f"0 drawn at {floor:.0e})")
    det.set_ylabel("false reject + wrong name rate (enrolled people's other photos)")
    det.set_title(f"DET per rule ({protocol}), threshold 0.30-0.80")
    sweep.set_yscale("log")
    sweep.set_xlabel("distance threshold")
    sweep.set_ylabel("rate (solid: false accept; dotted: false reject + wrong name)")
    sweep.set_title("Rates by threshold")
    for axis in (det, sweep):
        axis.grid(True, which="both", alpha=0.3)
    det.legend(fontsize=7)
    fig.tight_layout()
    plots.save(fig, path, dpi=100)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    # as a worker whose VISIONQ_FACE_DETECTOR it is (its decode size follows it too)
    model = face_model(args.face_detector)
    detector = model.settings.face_detector
    name = args.name or ("face_openset" if detector == "hog" else f"face_openset_{detector}")
    results = Run(name, argv)
    say(f"face detector: {detector}")
    genuine, fixture_strangers, missed = fixture_faces(model)
    say(f"gallery faces: {len(genuine)} ({', '.join(sorted({f.who for f in genuine}))}); "
        f"not detected: {missed}")
    found, true_faces, photos = imagenet_faces(model, args.limit_images)
    strangers = found + fixture_strangers
    members = sum(f.real and f.size_px >= MEMBER_MIN_PX for f in strangers)
    say(f"household members drawn from {members} real faces >= {MEMBER_MIN_PX} px")
    say(f"strangers: {len(found)} faces found in {photos} imagenet_val photos "
        f"({true_faces} of them labelled real faces, {len(found) - true_faces} "
        f"{detector} false positives) + {len(fixture_strangers)} fixture stranger")
    protocols = {
        "fixtures": evaluate(genuine, strangers, args.enrol, 2, 1),
        "household": evaluate(genuine, strangers, args.enrol, args.household, args.draws)}
    results.data.update({
        "detector": model.version, "face_detector": detector,
        "enrol_groups_per_person": args.enrol,
        "household": args.household, "draws": args.draws,
        "people": sorted(GROUPS), "genuine_faces": len(genuine),
        "genuine_sources": [f"{f.who}:{f.source}" for f in genuine],
        "not_detected": missed, "imagenet_photos": photos,
        "imagenet_faces_found": len(found), "imagenet_true_faces_found": true_faces,
        "strangers": len(strangers), "member_candidates": members,
        "stranger_sizes_px": sorted(f.size_px for f in strangers),
        "stranger_quality": {
            "size_px_median": float(np.median([f.size_px for f in strangers])),
            "sharpness_median": float(np.median([f.sharpness for f in strangers]))},
        "genuine_quality": {
            "size_px_min": min(f.size_px for f in genuine),
            "sharpness_min": min(f.sharpness for f in genuine)}})
    for protocol, evaluated in protocols.items():
        summary = summary_rows(evaluated["curves"])
        chosen = choose(evaluated["curves"])
        results.data[protocol] = {**{k: v for k, v in evaluated.items() if k != "curves"},
                                  "summary": summary, "chosen": chosen,
                                  "curves": compact(evaluated["curves"])}
        say(f"== {protocol}: {evaluated['galleries']} galleries, "
            f"{evaluated['stranger_presentations']} stranger presentations, "
            f"{evaluated['genuine_probes_per_gallery']} genuine probes per gallery")
        say_table(summary)
        say(f"chosen ({protocol}): {json.dumps(chosen)}")
        det_plot(results.plot_path(f"det_{protocol}"), evaluated["curves"],
                 evaluated["stranger_presentations"], protocol)
    results.data["chosen"] = results.data["household"]["chosen"]
    results.finish()
    return results.data
