"""The fast multipart decoder (api/multipart.py) against werkzeug's own, event by event."""

from __future__ import annotations

import io
import random

import pytest
import requests
from flask import Flask, request
from werkzeug.sansio.multipart import Epilogue, MultipartDecoder, NeedData

from api.multipart import BoundaryFinder, FastMultipartDecoder, VisionqRequest

BCHARS = "abcXYZ0189'()+_,-./:=? "
LINE_BREAKS = ["\r\n", "\n", "\r"]


def _boundary(rng: random.Random) -> bytes:
    size = rng.choice([1, 2, 5, 16, 40, 70])
    text = "".join(rng.choice(BCHARS) for _ in range(size - 1)) + rng.choice("abc-_")
    return text.encode()


def _payload(rng: random.Random, boundary: bytes) -> bytes:
    """Content that tries to confuse a boundary search: near-misses of the boundary."""
    pieces = [rng.randbytes(rng.randint(0, 300))]
    for _ in range(rng.randint(0, 4)):
        trick = rng.choice([
            b"--" + boundary[:-1],                       # a partial boundary
            b"x--" + boundary,                           # the boundary without a line break
            b"---" + boundary,                           # one hyphen too many, no line break
            rng.choice([b"\r", b"\n", b"\r\n"]) + b"-" + boundary,  # one hyphen short
            b"\r\n\r\n", b"\r\r", b"\n\n", b"--",
        ])
        pieces += [trick, rng.randbytes(rng.randint(0, 50))]
    return b"".join(pieces)


def _body(rng: random.Random, boundary: bytes) -> bytes:
    lb = rng.choice(LINE_BREAKS).encode()
    out = [rng.choice([b"", b"preamble text", b"x" * rng.randint(1, 20)])]
    if out[0] or rng.random() < 0.5:
        out.append(lb)
    for index in range(rng.randint(0, 3)):
        out += [b"--", boundary, rng.choice([b"", b" ", b"\t "]), lb]
        if rng.random() < 0.5:
            out += [f'Content-Disposition: form-data; name="f{index}"'.encode(), lb, lb]
        else:
            out += [f'Content-Disposition: form-data; name="image"; filename="a{index}.jpg"'
                    .encode(), lb, b"Content-Type: image/jpeg", lb, lb]
        out += [_payload(rng, boundary), lb]
    out += [b"--", boundary, b"--", rng.choice([b"", b"  ", lb, b" " + lb + b"epilogue"])]
    body = b"".join(out)
    if rng.random() < 0.1:
        body = body[:rng.randint(0, len(body))]  # a truncated upload
    return body


def _events(decoder: MultipartDecoder, body: bytes, chunks: list[int]) -> list[str]:
    """Every event (and the error a malformed body ends with) as fed in ``chunks``."""
    seen: list[str] = []
    position = 0
    try:
        for size in [*chunks, len(body)]:
            piece = body[position:position + size]
            position += len(piece)
            decoder.receive_data(piece or None)
            while True:
                event = decoder.next_event()
                seen.append(repr(event))
                if isinstance(event, (NeedData, Epilogue)):
                    break
            if not piece:
                break
    except ValueError as exc:
        seen.append(f"error: {exc}")
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_same_events_as_werkzeug_on_generated_bodies(seed: int) -> None:
    rng = random.Random(seed)
    differences = []
    for case in range(100):
        boundary = _boundary(rng)
        body = _body(rng, boundary)
        chunks = [rng.choice([1, 3, 7, 64, 1000, 65536]) for _ in range(rng.randint(0, 30))]
        expected = _events(MultipartDecoder(boundary), body, chunks)
        got = _events(FastMultipartDecoder(boundary), body, chunks)
        if got != expected:
            differences.append((case, boundary, body[:200], chunks))
    assert not differences, differences[:3]


def test_boundary_finder_matches_what_the_pattern_matches() -> None:
    finder = BoundaryFinder(b"xyz", line_break_first=True)
    match = finder.search(b"data\r\n--xyz\r\nnext")
    assert match is not None and (match.start(), match.end(), match.group(1)) == (4, 13, b"\r\n")
    closing = finder.search(b"data\n--xyz--")
    assert closing is not None and closing.group(1) == b"--" and closing.start() == 4
    assert finder.search(b"data--xyz\r\n") is None  # no line break before it
    assert finder.search(b"data\r\n--xyz") is None  # nothing after it yet
    preamble = BoundaryFinder(b"xyz", line_break_first=False)
    first = preamble.search(b"--xyz\r\n")
    assert first is not None and first.start() == 0


def test_flask_request_parses_uploads_like_werkzeug() -> None:
    app = Flask(__name__)
    app.request_class = VisionqRequest

    @app.post("/echo")
    def echo() -> dict[str, object]:
        files = {name: [f.filename, f.read().hex()] for name, f in request.files.items()}
        return {"form": dict(request.form), "files": files,
                "fast": isinstance(request, VisionqRequest)}

    plain = Flask("plain")
    plain.add_url_rule("/echo", view_func=echo, methods=["POST"])
    client, reference = app.test_client(), plain.test_client()
    rng = random.Random(7)
    for _ in range(30):
        image = rng.randbytes(rng.randint(0, 200_000))
        prepared = requests.Request(
            "POST", "http://x/echo", files={"image": ("a.jpg", image)},
            data={"options": '{"min_confidence": 0.4}', "userid": "ada"}).prepare()
        headers = {"Content-Type": prepared.headers["Content-Type"]}
        fast = client.post("/echo", data=io.BytesIO(prepared.body), headers=headers)
        slow = reference.post("/echo", data=io.BytesIO(prepared.body), headers=headers)
        assert fast.status_code == 200, fast.data
        assert fast.json["fast"] and not slow.json["fast"]
        assert {**fast.json, "fast": None} == {**slow.json, "fast": None}
        assert fast.json["files"]["image"] == ["a.jpg", image.hex()]
