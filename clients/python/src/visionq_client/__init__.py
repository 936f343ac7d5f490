"""visionq-client: a light client for visionq (``requests`` and ``simple-websocket``)."""

from importlib.metadata import PackageNotFoundError, version

from visionq_client.aio import AsyncClient
from visionq_client.client import DEFAULT_URL, Client, image_files
from visionq_client.errors import StreamClosedError, VisionqError
from visionq_client.models import (
    FaceMatch,
    FacePrediction,
    Job,
    Label,
    ObjectPrediction,
    Registration,
    StreamResult,
    Timings,
)
from visionq_client.progress import Progress
from visionq_client.retry import NO_RETRY, RetryPolicy
from visionq_client.stream import connect_stream, stream_frames

try:
    __version__ = version("visionq-client")
except PackageNotFoundError:  # imported from a source tree
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_URL", "NO_RETRY", "AsyncClient", "Client", "FaceMatch", "FacePrediction", "Job",
    "Label", "ObjectPrediction", "Progress", "Registration", "RetryPolicy", "StreamClosedError",
    "StreamResult", "Timings", "VisionqError", "connect_stream", "image_files",
    "stream_frames", "__version__",
]
