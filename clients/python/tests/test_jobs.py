"""The job API: submit, wait, run, batch, errors, typed results."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagegen import png
from visionq_client import Client, Job, VisionqError


def test_run_returns_a_typed_finished_job(client: Client, face_task: str) -> None:
    job = client.run(png(24, 16), face_task, {"upsample": 0}, timeout_s=120)
    assert isinstance(job, Job) and job.done and job.succeeded, job
    assert job.result == {**job.result, "faces": [], "width": 24, "height": 16}
    assert job.timings.total_ms is not None and job.timings.finished_at
    assert job.raw["id"] == job.id and job.attempts >= 1


def test_submit_then_wait(client: Client, face_task: str) -> None:
    queued = client.submit(png(30, 20), face_task)
    assert queued.status in ("queued", "running", "succeeded") and queued.result is None
    done = client.wait(queued, timeout_s=120)
    assert done.id == queued.id and done.succeeded
    assert client.job(done.id).raw == done.raw


def test_an_error_answer_raises_with_the_apis_code(client: Client, face_task: str) -> None:
    with pytest.raises(VisionqError) as caught:
        client.submit(b"this is not an image", face_task)
    assert caught.value.status == 400 and caught.value.code == "not_an_image"
    with pytest.raises(VisionqError) as unknown:
        client.job("0" * 32)
    assert unknown.value.status == 404 and unknown.value.code == "job_not_found"


def test_batch_of_a_folder_with_progress(client: Client, face_task: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        (tmp_path / f"img-{i}.png").write_bytes(png(20 + i, 20))
    (tmp_path / "notes.txt").write_text("not an image: not sent")
    jobs = client.batch(tmp_path, face_task, wait=True, progress=True, timeout_s=120)
    assert [j.result["width"] for j in jobs] == [20, 21, 22]
    assert all(j.succeeded for j in jobs)
    assert "3/3" in capsys.readouterr().err


def test_the_async_client(api_url: str, api_key: str | None, face_task: str) -> None:
    import asyncio

    from visionq_client import AsyncClient

    async def main() -> tuple[list[Job], list[str]]:
        async with AsyncClient(api_url, api_key=api_key) as client:
            jobs = await asyncio.gather(*(client.run(png(10 + i, 10), face_task, timeout_s=120)
                                          for i in range(3)))
            refs = [r.ref async for r in client.stream([("a", png(8, 8)), ("b", b"junk")],
                                                       face_task)]
            return list(jobs), refs

    jobs, refs = asyncio.run(main())
    assert [j.result["width"] for j in jobs] == [10, 11, 12] and all(j.succeeded for j in jobs)
    assert sorted(refs) == ["a", "b"]
