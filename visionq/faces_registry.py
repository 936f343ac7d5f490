"""Known faces for DeepStack's ``/v1/vision/face/*``: userid -> 128-d encodings in Redis.

Only encodings are stored (never photos), in one hash with no expiry, so registered faces
survive API and Redis restarts (with persistence on, as in ``visionq up``).  Matching is
face_recognition's: Euclidean distance between encodings, a match when the distance is at
most the tolerance (0.6 by default).

Confidence from a distance follows the mapping in face_recognition's wiki
("Calculating Accuracy as a Percentage"): linear below and above the tolerance, bent so
that ``distance == tolerance`` gives 0.5 and distances a little below it already give
~0.7.  With tolerance 0.6, DeepStack's default ``min_confidence`` of 0.67 accepts distances
up to ~0.597, i.e. nearly the same decisions as face_recognition's ``compare_faces``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

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


class FaceRegistry:
    def __init__(self, client: redis.Redis, tolerance: float = 0.6) -> None:
        self._client = client
        self.tolerance = tolerance

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

    def identify(self, encodings: list[list[float]]) -> list[Match | None]:
        """The nearest registered user for each encoding, or None if nobody is within the
        tolerance (or nobody is registered)."""
        names, known = self._all()
        matches: list[Match | None] = []
        for encoding in encodings:
            if not names:
                matches.append(None)
                continue
            distances = np.linalg.norm(known - np.asarray(encoding, dtype=np.float64), axis=1)
            best = int(np.argmin(distances))
            distance = float(distances[best])
            if distance > self.tolerance:
                matches.append(None)
                continue
            matches.append(Match(names[best], distance,
                                 distance_to_confidence(distance, self.tolerance)))
        return matches

    def similarity(self, first: list[float], second: list[float]) -> float:
        distance = float(np.linalg.norm(np.asarray(first) - np.asarray(second)))
        return distance_to_confidence(distance, self.tolerance)
