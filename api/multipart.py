"""Multipart uploads without compiling two regular expressions per request.

Werkzeug's ``MultipartDecoder`` compiles two patterns that embed the request's boundary
(``\\r\\n--<boundary>(--…|…\\r\\n)``).  Every client picks a fresh random boundary, so
Python's pattern cache never hits: the two compilations cost ≈ 0.3 ms of CPU per upload,
half of the whole multipart parse of a 100 KB image, on every ``POST /v1/jobs`` and
DeepStack call (measured: ``python -m bench.stage_costs``, issue 14).

``BoundaryFinder`` finds the same matches with ``bytes.find`` plus one constant,
precompiled pattern for what may follow the boundary.  ``FastMultipartDecoder`` is
werkzeug's decoder with those finders in place of its two compiled patterns (everything
else — states, limits, header parsing — is werkzeug's own code), and ``VisionqRequest``
is Flask's request class using it.  ``tests/api/test_multipart.py`` checks, on thousands
of generated bodies fed in random chunk sizes, that both decoders produce the same events.
"""

from __future__ import annotations

import re
import typing as t

from flask import Request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser, _chunk_iter
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

LINE_BREAKS = (b"\r\n", b"\n", b"\r")
_TAIL = re.compile(rb"(--[^\S\n\r]*(?:\r\n|\n|\r)?|[^\S\n\r]*(?:\r\n|\n|\r))")
"""What follows ``--<boundary>`` in werkzeug's patterns: ``--`` (the closing boundary)
with optional trailing blanks and line break, or blanks and a line break."""
_PLACEHOLDER_BOUNDARY = b"visionq"
"""The boundary handed to werkzeug's own ``__init__``: always the same, so its two
patterns come from Python's pattern cache after the first request."""


class BoundaryMatch:
    """The part of ``re.Match`` werkzeug's decoder uses: ``start()``, ``end()``,
    ``group(1)``."""

    __slots__ = ("_end", "_start", "_tail")

    def __init__(self, start: int, end: int, tail: bytes) -> None:
        self._start, self._end, self._tail = start, end, tail

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        if index != 1:
            raise IndexError("only group 1 (what follows the boundary) is kept")
        return self._tail


class BoundaryFinder:
    """``search(buffer, pos)`` with the matches of werkzeug's boundary patterns.

    ``line_break_first``: the boundary must follow a line break (every boundary but the
    first); without it the line break is optional (the preamble's pattern)."""

    def __init__(self, boundary: bytes, *, line_break_first: bool) -> None:
        self._needle = b"--" + boundary
        self._line_break_first = line_break_first

    def search(self, buffer: bytes | bytearray, pos: int = 0) -> BoundaryMatch | None:
        needle = self._needle
        at = buffer.find(needle, pos)
        while at != -1:
            start = self._start(buffer, pos, at)
            if start is not None:
                tail = _TAIL.match(buffer, at + len(needle))
                if tail is not None:
                    return BoundaryMatch(start, tail.end(), bytes(tail.group(1)))
            at = buffer.find(needle, at + 1)
        return None

    def _start(self, buffer: bytes | bytearray, pos: int, at: int) -> int | None:
        """Where a match of the boundary found at ``at`` starts (its line break, if any)."""
        for line_break in LINE_BREAKS:  # longest first: the leftmost start wins
            begin = at - len(line_break)
            if begin >= pos and buffer[begin:at] == line_break:
                return begin
        return None if self._line_break_first else at


class FastMultipartDecoder(MultipartDecoder):
    """Werkzeug's decoder with ``BoundaryFinder`` in place of its per-request patterns."""

    def __init__(self, boundary: bytes, max_form_memory_size: int | None = None, *,
                 max_parts: int | None = None) -> None:
        super().__init__(_PLACEHOLDER_BOUNDARY, max_form_memory_size, max_parts=max_parts)
        self.boundary = boundary
        self.preamble_re = BoundaryFinder(boundary, line_break_first=False)  # type: ignore[assignment]
        self.boundary_re = BoundaryFinder(boundary, line_break_first=True)  # type: ignore[assignment]


class FastMultiPartParser(MultiPartParser):
    def parse(self, stream: t.IO[bytes], boundary: bytes, content_length: int | None,
              ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        """Werkzeug 3.1's ``MultiPartParser.parse`` with ``FastMultipartDecoder`` (the
        decoder is not a parameter there); the loop is theirs, unchanged."""
        current_part: Field | File
        field_size: int | None = None
        container: t.IO[bytes] | list[bytes]
        _write: t.Callable[[bytes], t.Any]
        parser = FastMultipartDecoder(boundary, max_form_memory_size=self.max_form_memory_size,
                                      max_parts=self.max_form_parts)
        fields = []
        files = []
        for data in _chunk_iter(stream.read, self.buffer_size):
            parser.receive_data(data)
            event = parser.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                if isinstance(event, Field):
                    current_part = event
                    field_size = 0
                    container = []
                    _write = container.append
                elif isinstance(event, File):
                    current_part = event
                    field_size = None
                    container = self.start_file_streaming(event, content_length)
                    _write = container.write
                elif isinstance(event, Data):
                    if self.max_form_memory_size is not None and field_size is not None:
                        field_size += len(event.data)
                        if field_size > self.max_form_memory_size:
                            raise RequestEntityTooLarge()
                    _write(event.data)
                    if not event.more_data:
                        if isinstance(current_part, Field):
                            value = b"".join(t.cast(list[bytes], container)).decode(
                                self.get_part_charset(current_part.headers), "replace")
                            fields.append((current_part.name, value))
                        else:
                            container = t.cast(t.IO[bytes], container)
                            container.seek(0)
                            files.append((current_part.name, FileStorage(
                                container, current_part.filename, current_part.name,
                                headers=current_part.headers)))
                event = parser.next_event()
        return self.cls(fields), self.cls(files)


class FastFormDataParser(FormDataParser):
    def _parse_multipart(self, stream: t.IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> t.Any:
        parser = FastMultiPartParser(stream_factory=self.stream_factory,
                                     max_form_memory_size=self.max_form_memory_size,
                                     max_form_parts=self.max_form_parts, cls=self.cls)
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class VisionqRequest(Request):
    """Flask's request with the fast multipart decoder (``app.request_class``)."""

    form_data_parser_class = FastFormDataParser
