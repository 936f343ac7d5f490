"""Many images over one WebSocket."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagegen import png
from visionq_client import Client, StreamResult


def test_a_folder_streams_with_a_result_per_image(client: Client, face_task: str,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(4):
        (tmp_path / f"frame-{i}.png").write_bytes(png(20 + i, 10))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    results = list(client.stream(tmp_path, face_task, window=2, progress=True))
    assert all(isinstance(r, StreamResult) for r in results)
    by_name = {Path(r.ref).name: r for r in results if r.ref}
    assert sorted(by_name) == ["frame-0.png", "frame-1.png", "frame-2.png", "frame-3.png",
                               "junk.jpg"]
    assert by_name["junk.jpg"].status == "rejected" and by_name["junk.jpg"].id is None
    assert by_name["junk.jpg"].http_status == 400
    assert [by_name[f"frame-{i}.png"].result["width"] for i in range(4)] == [20, 21, 22, 23]
    assert "5/5, 1 failed" in capsys.readouterr().err


def test_idempotent_refs_are_the_same_job(client: Client, face_task: str) -> None:
    import uuid

    ref = f"cam/{uuid.uuid4().hex}"
    first = list(client.stream([(ref, png(12, 12))], face_task, idempotent=True))
    again = list(client.stream([(ref, png(12, 12))], face_task, idempotent=True))
    assert first[0].succeeded and again[0].id == first[0].id
