"""Known faces for DeepStack's ``/v1/vision/face/*``: userid -> 128-d encodings in Redis.

Only encodings are stored (never photos), in one hash with no expiry, so registered faces
survive API and Redis restarts (with persistence on, as in ``visionq up``).  Matching is
face_recognition's: Euclidean distance between encodings (a person's distance: their
nearest encoding), decided by a ``Policy``: a match when the distance is at most the
tolerance, and optionally a margin to the second-nearest person and a face size/sharpness
gate.  ``Policy()`` is face_recognition's own rule (0.6, nothing else); the service's
defaults (``VISIONQ_FACE_TOLERANCE`` 0.47, ``VISIONQ_FACE_MIN_SIZE_PX`` 50) come from
``python -m bench face-openset`` (docs/models.md, "Face recognition threshold").

Confidence from a distance follows the mapping in face_recognition's wiki
("Calculating Accuracy as a Percentage"): linear below and above the tolerance, bent so
that ``distance == tolerance`` gives 0.5 and distances a little below it already give
~0.7.  DeepStack's default ``min_confidence`` of 0.67 accepts distances up to ~0.995 of the
tolerance (~0.597 at 0.6, ~0.468 at 0.47): nearly the policy's own decisions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from visionq.keys import FACES_KEY as REGISTRY_KEY

ENCODING_SIZE = 128


def distance_to_confidence(distance: float, tolerance: float = 0.6) -> float:
    """0..1, 0.5 exactly at ``tolerance``, rising steeply below it."""
    if distance > tolerance:
        span = 1.0 - tolerance
        return max(0.0, (1.0 - distance) / (span * 2.0))
    linear = 1.0 - distance / (tolerance * 2.0)
    return min(1.0, linear + (1.0 - linear) * math.pow((linear - 0.5) * 2, 0.2))


def _checked(encoding: list[float]) -> list[float]:
    """``encoding`` as 128 finite floats rounded to 6 places, or ValueError."""
    if len(encoding) != ENCODING_SIZE:
        raise ValueError(f"an encoding has {len(encoding)} values, not {ENCODING_SIZE}")
    values = [round(float(v), 6) for v in encoding]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("an encoding has a value that is not a finite number")
    return values


@dataclass(frozen=True)
class Match:
    userid: str
    distance: float
    confidence: float


@dataclass(frozen=True)
class Policy:
    """When the nearest registered person is accepted as the face's name (the defaults and
    why: docs/models.md, "Face recognition threshold", ``python -m bench face-openset``)."""

    tolerance: float = 0.6
    """Largest distance to the person's nearest registered encoding."""
    min_margin: float = 0.0
    """The second-nearest person must be at least this much farther."""
    min_size_px: int = 0
    """Faces less high than this (original px) are answered unknown."""
    min_sharpness: float = 0.0
    """Faces less sharp than this (``visionq.face_quality``) are answered unknown."""


@dataclass(frozen=True)
class Identification:
    """One face against the registry: ``match`` if accepted, else ``reason``
    (``no_registered_faces``, ``too_far``, ``low_margin``, ``low_quality``);
    ``subjects``: the nearest people (up to the asked count), accepted or not."""

    match: Match | None
    distance: float | None
    subjects: list[Match]
    reason: str | None = None


UNKNOWN = "unknown"
"""The name of a face the policy does not accept (DeepStack's)."""


def policy_from(settings: Any) -> Policy:
    """The recognizer's policy from ``visionq.settings.Settings``."""
    return Policy(tolerance=settings.face_tolerance, min_margin=settings.face_min_margin,
                  min_size_px=settings.face_min_size_px,
                  min_sharpness=settings.face_min_sharpness)


def recognition_fields(found: Identification) -> dict[str, Any]:
    """What a face result gains from recognition: ``userid`` (or "unknown"),
    ``similarity`` (0..1, 0 when unknown), ``distance`` to the nearest registered person
    (``None`` with nobody registered), ``unknown_reason`` and the nearest ``subjects``
    (CompreFace's shape plus ``distance``), so that a client can apply its own policy."""
    match = found.match
    return {"userid": match.userid if match else UNKNOWN,
            "similarity": round(match.confidence, 4) if match else 0.0,
            "distance": None if found.distance is None else round(found.distance, 4),
            "unknown_reason": found.reason,
            "subjects": [{"subject": m.userid, "similarity": round(m.confidence, 4),
                          "distance": round(m.distance, 4)} for m in found.subjects]}


class FaceRegistry:
    def __init__(self, client: redis.Redis, tolerance: float = 0.6,
                 policy: Policy | None = None) -> None:
        self._client = client
        self.policy = policy or Policy(tolerance=tolerance)
        self.tolerance = self.policy.tolerance

    def add(self, userid: str, encodings: list[list[float]]) -> int:
        """Append encodings to ``userid``; returns how many that user now has.  Atomic with
        respect to other ``add``/``replace`` calls for the same user (WATCH/MULTI)."""
        return self._store(userid, encodings, append=True)[0]

    def replace(self, userid: str, encodings: list[list[float]]) -> tuple[int, bool]:
        """Make ``encodings`` the only ones of ``userid`` (DeepStack's register); returns
        (how many it now has, whether the user existed before)."""
        return self._store(userid, encodings, append=False)

    def _store(self, userid: str, encodings: list[list[float]],
               append: bool) -> tuple[int, bool]:
        rows = [_checked(encoding) for encoding in encodings]
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(REGISTRY_KEY)
                    raw = pipe.hget(REGISTRY_KEY, userid)
                    stored = json.loads(raw) if raw and append else []
                    stored.extend(rows)
                    pipe.multi()
                    pipe.hset(REGISTRY_KEY, userid, json.dumps(stored))
                    pipe.execute()
                    return len(stored), raw is not None
                except redis.WatchError:
                    continue

    def export(self) -> dict[str, list[list[float]]]:
        """Every user's encodings (for a backup), users sorted by name."""
        everything = self._client.hgetall(REGISTRY_KEY)
        return {name.decode(): json.loads(everything[name]) for name in sorted(everything)}

    def restore(self, faces: dict[str, list[list[float]]]) -> None:
        """Replace the whole registry with ``faces`` in one MULTI (a reader sees the old
        registry or the new one, never a mix).  Every encoding is checked before anything is
        written, so a bad one changes nothing."""
        rows = {userid: json.dumps([_checked(e) for e in encodings])
                for userid, encodings in faces.items()}
        with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(REGISTRY_KEY)
            if rows:
                pipe.hset(REGISTRY_KEY, mapping=rows)
            pipe.execute()

    def users(self) -> list[str]:
        return sorted(name.decode() for name in self._client.hkeys(REGISTRY_KEY))

    def delete(self, userid: str) -> bool:
        return bool(self._client.hdel(REGISTRY_KEY, userid))

    def _all(self) -> tuple[list[str], np.ndarray]:
        names: list[str] = []
        rows: list[list[float]] = []
        for raw_name, raw in self._client.hgetall(REGISTRY_KEY).items():
            for encoding in json.loads(raw):
                names.append(raw_name.decode())
                rows.append(encoding)
        return names, np.asarray(rows, dtype=np.float64).reshape(-1, ENCODING_SIZE)

    def identify(self, encodings: list[list[float]],
                 qualities: list[dict[str, Any] | None] | None = None) -> list[Match | None]:
        """The nearest registered user for each encoding, or None if the policy does not
        accept it (or nobody is registered); ``qualities``: the faces' ``quality``, for the
        policy's size/sharpness gate (without them it is not applied)."""
        return [found.match for found in self.recognize(encodings, qualities)]

    def recognize(self, encodings: list[list[float]],
                  qualities: list[dict[str, Any] | None] | None = None,
                  count: int = 1) -> list[Identification]:
        """Each encoding against every registered person (a person's distance: their
        nearest encoding), decided by ``self.policy``; ``qualities`` as the face results'
        ``quality`` (missing: not gated)."""
        names, known = self._all()
        people = sorted(set(names))
        owner = np.asarray([people.index(name) for name in names], dtype=np.int64)
        found: list[Identification] = []
        for number, encoding in enumerate(encodings):
            if not people:
                found.append(Identification(None, None, [], "no_registered_faces"))
                continue
            distances = np.linalg.norm(known - np.asarray(encoding, dtype=np.float64), axis=1)
            per_person = np.full(len(people), np.inf)
            np.minimum.at(per_person, owner, distances)
            order = np.argsort(per_person, kind="stable")
            subjects = [self._match(people[i], float(per_person[i]))
                        for i in order[:max(1, count)]]
            best = subjects[0]
            second = float(per_person[order[1]]) if len(people) > 1 else math.inf
            quality = (qualities[number] if qualities and number < len(qualities)
                       else None) or {}
            reason = self._refusal(best.distance, second, quality)
            found.append(Identification(None if reason else best, best.distance,
                                        subjects[:max(1, count)], reason))
        return found

    def _match(self, userid: str, distance: float) -> Match:
        return Match(userid, distance, distance_to_confidence(distance, self.tolerance))

    def _refusal(self, best: float, second: float, quality: dict[str, Any]) -> str | None:
        policy = self.policy
        if (float(quality.get("size_px", math.inf)) < policy.min_size_px
                or float(quality.get("sharpness", math.inf)) < policy.min_sharpness):
            return "low_quality"
        if best > policy.tolerance:
            return "too_far"
        if second - best < policy.min_margin:
            return "low_margin"
        return None

    def similarity(self, first: list[float], second: list[float]) -> float:
        distance = float(np.linalg.norm(np.asarray(first) - np.asarray(second)))
        return distance_to_confidence(distance, self.tolerance)
