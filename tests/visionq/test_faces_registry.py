"""Known-faces registry (real Redis) and the distance -> confidence mapping."""

from __future__ import annotations

import pytest
import redis

from visionq.faces_registry import (
    FaceRegistry,
    Identification,
    Match,
    Policy,
    distance_to_confidence,
    recognition_fields,
)


@pytest.mark.parametrize(("distance", "low", "high"), [
    (0.0, 1.0, 1.0),
    (0.3, 0.95, 1.0),
    (0.5, 0.85, 0.9),
    (0.595, 0.67, 0.7),   # just inside face_recognition's tolerance: above DeepStack's 0.67
    (0.6, 0.5, 0.5),
    (0.8, 0.2, 0.3),
    (1.2, 0.0, 0.0),
])
def test_distance_to_confidence(distance: float, low: float, high: float) -> None:
    assert low <= distance_to_confidence(distance) <= high


def test_confidence_decreases_with_distance() -> None:
    values = [distance_to_confidence(d / 100) for d in range(0, 150)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_add_identify_delete(idle_redis_url: str) -> None:
    registry = FaceRegistry(redis.Redis.from_url(idle_redis_url))
    near, far = [0.0] * 128, [0.0] * 128
    far[0] = 0.5
    assert registry.add("ann", [near]) == 1
    assert registry.add("ann", [near]) == 2
    assert registry.add("bob", [far]) == 1
    assert registry.users() == ["ann", "bob"]
    probe = [0.0] * 128
    probe[0] = 0.1
    match, nobody = registry.identify([probe, [5.0] * 128])
    assert match is not None and match.userid == "ann" and match.distance == pytest.approx(0.1)
    assert nobody is None
    assert registry.delete("ann") and not registry.delete("ann")
    assert registry.identify([probe])[0].userid == "bob"
    with pytest.raises(ValueError):
        registry.add("x", [[0.0] * 3])


def test_identify_with_nobody_registered(idle_redis_url: str) -> None:
    assert FaceRegistry(redis.Redis.from_url(idle_redis_url)).identify([[0.0] * 128]) == [None]


def _person(index: int, value: float = 0.0) -> list[float]:
    """An encoding 1.0 away from the origin on axis ``index`` (plus ``value`` on axis 0)."""
    encoding = [0.0] * 128
    encoding[index] = 1.0
    encoding[0] += value
    return encoding


def test_recognize_ranks_people_and_gives_the_distance(idle_redis_url: str) -> None:
    registry = FaceRegistry(redis.Redis.from_url(idle_redis_url))
    registry.add("ann", [_person(1), _person(1, 0.1)])  # two encodings: nearest counts
    registry.add("bob", [_person(2)])
    probe = _person(1)
    probe[1] = 0.7  # 0.3 from ann's first encoding
    [found] = registry.recognize([probe], count=5)
    assert found.match is not None and found.match.userid == "ann" and found.reason is None
    assert found.distance == pytest.approx(0.3)
    assert [s.userid for s in found.subjects] == ["ann", "bob"]  # each person once, nearest first
    assert found.subjects[1].distance > found.subjects[0].distance
    [only_one] = registry.recognize([probe])
    assert [s.userid for s in only_one.subjects] == ["ann"]
    [far] = registry.recognize([_person(3)], count=2)
    assert far.match is None and far.reason == "too_far" and far.distance == pytest.approx(
        2 ** 0.5) and len(far.subjects) == 2


def test_recognize_with_nobody_registered(idle_redis_url: str) -> None:
    [found] = FaceRegistry(redis.Redis.from_url(idle_redis_url)).recognize([[0.0] * 128])
    assert found.match is None and found.distance is None and found.subjects == []
    assert found.reason == "no_registered_faces"


def test_margin_and_quality_gate(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    FaceRegistry(client).add("ann", [_person(1)])
    FaceRegistry(client).add("bob", [_person(2)])
    between = [0.0] * 128
    between[1] = between[2] = 0.5  # ~0.71 from both
    loose = FaceRegistry(client, policy=Policy(tolerance=0.8))
    assert loose.recognize([between])[0].match is not None
    strict = FaceRegistry(client, policy=Policy(tolerance=0.8, min_margin=0.05))
    assert strict.recognize([between])[0].reason == "low_margin"
    gated = FaceRegistry(client, policy=Policy(min_size_px=60, min_sharpness=30))
    near = _person(1)
    assert gated.recognize([near], [{"size_px": 80, "sharpness": 50}])[0].match is not None
    assert gated.recognize([near], [{"size_px": 40, "sharpness": 50}])[0].reason == "low_quality"
    assert gated.recognize([near], [{"size_px": 80, "sharpness": 10}])[0].reason == "low_quality"
    assert gated.recognize([near])[0].match is not None  # no quality given: not gated


def test_recognition_fields() -> None:
    unknown = recognition_fields(Identification(None, 0.71234, [Match("ann", 0.71234, 0.4)],
                                                "too_far"))
    assert unknown == {"userid": "unknown", "similarity": 0.0, "distance": 0.7123,
                       "unknown_reason": "too_far",
                       "subjects": [{"subject": "ann", "similarity": 0.4, "distance": 0.7123}]}
