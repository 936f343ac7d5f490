"""Uploads are parsed by werkzeug's own multipart parser (``flask.Request``): the fork that
avoided its two regex compilations per upload (``api/multipart.py``, a copy of werkzeug
3.1's parse loop) is gone, measured by ``python -m bench keep-or-drop`` (retired: its
figures are in bench/results/HISTORY.md).  The API parses uploads as plain werkzeug
does, and werkzeug's limits answer with the JSON error shape."""

from __future__ import annotations

import io
import random
from pathlib import Path

import flask
import requests
from flask import Flask, request

from api import create_app


def _app(redis_url: str, tmp_path: Path) -> Flask:
    return create_app({"redis_url": redis_url, "history_writer": False,
                       "history_url": f"sqlite:///{tmp_path / 'history.sqlite3'}"})


def test_the_api_uses_werkzeugs_own_request(idle_redis_url: str, tmp_path: Path) -> None:
    assert _app(idle_redis_url, tmp_path).request_class is flask.Request


def test_flask_request_parses_uploads_like_werkzeug(idle_redis_url: str,
                                                    tmp_path: Path) -> None:
    app = _app(idle_redis_url, tmp_path)

    @app.post("/echo")
    def echo() -> dict[str, object]:
        files = {name: [f.filename, f.read().hex()] for name, f in request.files.items()}
        return {"form": dict(request.form), "files": files}

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
        got = client.post("/echo", data=io.BytesIO(prepared.body), headers=headers)
        slow = reference.post("/echo", data=io.BytesIO(prepared.body), headers=headers)
        assert got.status_code == 200, got.data
        assert got.json == slow.json
        assert got.json["files"]["image"] == ["a.jpg", image.hex()]
        assert got.json["form"] == {"options": '{"min_confidence": 0.4}', "userid": "ada"}


def test_too_many_parts_is_413_json(idle_redis_url: str, tmp_path: Path) -> None:
    """werkzeug's ``max_form_parts`` (1,000) through the API's error handlers."""
    client = _app(idle_redis_url, tmp_path).test_client()
    boundary = "b0undary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'
             for i in range(1001)]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    response = client.post("/v1/jobs?task=classify", data=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.data
    assert response.get_json()["success"] is False


def test_malformed_multipart_is_a_json_4xx(idle_redis_url: str, tmp_path: Path) -> None:
    client = _app(idle_redis_url, tmp_path).test_client()
    for ctype, body in (("multipart/form-data", b"--x\r\n"),  # no boundary parameter
                        ("multipart/form-data; boundary=x", b"garbage without a boundary")):
        response = client.post("/v1/jobs?task=classify", data=body,
                               headers={"Content-Type": ctype})
        assert 400 <= response.status_code < 500, (ctype, response.data)
        assert response.get_json()["success"] is False
