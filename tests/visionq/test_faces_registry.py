"""Known-faces registry (real Redis) and the distance -> confidence mapping."""

from __future__ import annotations

import pytest
import redis

from visionq.faces_registry import FaceRegistry, distance_to_confidence


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
