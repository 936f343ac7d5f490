"""``AsyncClient``: ``Client``'s calls, awaitable.  Each call runs ``Client``'s in a worker
thread (``asyncio.to_thread``), so an event loop is never blocked and no async HTTP
library is needed; ``stream`` is an async iterator fed by a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from visionq_client.client import Client
from visionq_client.models import (
    FaceMatch,
    FacePrediction,
    Job,
    Label,
    ObjectPrediction,
    Registration,
    StreamResult,
)

T = TypeVar("T")
_END = object()


class AsyncClient:
    """``AsyncClient(base_url, api_key=..., ...)`` takes ``Client``'s arguments;
    ``.sync`` is the ``Client`` underneath."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = Client(*args, **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.sync.close()

    @staticmethod
    async def _call(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(call, *args, **kwargs)

    async def submit(self, *args: Any, **kwargs: Any) -> Job:
        return await self._call(self.sync.submit, *args, **kwargs)

    async def job(self, *args: Any, **kwargs: Any) -> Job:
        return await self._call(self.sync.job, *args, **kwargs)

    async def wait(self, *args: Any, **kwargs: Any) -> Job:
        return await self._call(self.sync.wait, *args, **kwargs)

    async def run(self, *args: Any, **kwargs: Any) -> Job:
        return await self._call(self.sync.run, *args, **kwargs)

    async def batch(self, *args: Any, **kwargs: Any) -> list[Job]:
        return await self._call(self.sync.batch, *args, **kwargs)

    async def detect(self, *args: Any, **kwargs: Any) -> list[ObjectPrediction]:
        return await self._call(self.sync.detect, *args, **kwargs)

    async def detect_faces(self, *args: Any, **kwargs: Any) -> list[FacePrediction]:
        return await self._call(self.sync.detect_faces, *args, **kwargs)

    async def recognize(self, *args: Any, **kwargs: Any) -> list[FaceMatch]:
        return await self._call(self.sync.recognize, *args, **kwargs)

    async def register(self, *args: Any, **kwargs: Any) -> Registration:
        return await self._call(self.sync.register, *args, **kwargs)

    async def list_faces(self) -> list[str]:
        return await self._call(self.sync.list_faces)

    async def delete_face(self, userid: str) -> bool:
        return await self._call(self.sync.delete_face, userid)

    async def match_faces(self, *args: Any, **kwargs: Any) -> float | None:
        return await self._call(self.sync.match_faces, *args, **kwargs)

    async def classify(self, *args: Any, **kwargs: Any) -> list[Label]:
        return await self._call(self.sync.classify, *args, **kwargs)

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[StreamResult]:
        """``Client.stream``'s results as they arrive; an error in the stream is raised
        here."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def pump() -> None:
            try:
                for result in self.sync.stream(*args, **kwargs):
                    loop.call_soon_threadsafe(queue.put_nowait, result)
            except BaseException as exc:  # handed to the awaiting side
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        threading.Thread(target=pump, name="visionq-stream", daemon=True).start()
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
