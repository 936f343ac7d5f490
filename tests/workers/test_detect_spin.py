"""The detector's ONNX Runtime threads sleep between parallel sections unless
``VISIONQ_DETECT_SPIN`` asks them to spin (spinning measured ~2x slower per frame while the
cores are shared: docs/performance.md, real-time detection for cameras)."""

from __future__ import annotations

import pytest

from workers.plugins.centernet_mbv3 import CenterNetMbv3

SPIN = "session.intra_op.allow_spinning"


@pytest.mark.parametrize(("overrides", "expected"), [({}, "0"), ({"spin": True}, "1")])
def test_the_sessions_threads_spin_only_when_asked(overrides: dict[str, bool],
                                                   expected: str) -> None:
    model = CenterNetMbv3(**overrides)
    model.load()
    assert model._session.get_session_options().get_session_config_entry(SPIN) == expected
