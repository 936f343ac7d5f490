"""``/v1/backup`` and ``/v1/restore``: the known-faces registry as one file (admin key).

DeepStack's server has both (``backup`` zips its face database, ``restore`` reads the
multipart field ``file``); visionq's file is JSON instead, with a format name and version
so a later format can still read this one:

    {"format": "visionq-faces", "version": 1, "created": "<UTC ISO 8601>",
     "encoding_size": 128, "faces": {"<userid>": [[128 floats], ...], ...}}

A restore replaces the whole registry in one Redis transaction, and only after the whole
file has been checked: a corrupt or foreign file is a 400 and changes nothing (the same
rule as ``api.submission``: every check before any write).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from api.errors import ApiError
from api.services import services
from visionq.faces_registry import ENCODING_SIZE

bp = Blueprint("backup", __name__, url_prefix="/v1")

FORMAT = "visionq-faces"
VERSION = 1
MAX_USERID_CHARS = 256


def build_backup(faces: dict[str, list[list[float]]]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoding_size": ENCODING_SIZE, "faces": faces}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_backup", f"not a valid visionq backup: {message}")


def _encoding(value: Any, userid: str) -> list[float]:
    if not isinstance(value, list) or len(value) != ENCODING_SIZE:
        raise _invalid(f"an encoding of {userid!r} is not a list of {ENCODING_SIZE} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in value):
        raise _invalid(f"an encoding of {userid!r} has a value that is not a finite number")
    return [float(v) for v in value]


def parse_backup(raw: bytes) -> dict[str, list[list[float]]]:
    """The faces of a backup file, or ApiError 400 saying what is wrong with it."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _invalid(f'"format" is not "{FORMAT}"')
    if document.get("version") != VERSION:
        raise ApiError(400, "unsupported_backup_version",
                       f"backup version {document.get('version')!r} is not supported "
                       f"(this server reads version {VERSION})")
    if document.get("encoding_size") != ENCODING_SIZE:
        raise _invalid(f'"encoding_size" is not {ENCODING_SIZE}')
    faces = document.get("faces")
    if not isinstance(faces, dict):
        raise _invalid('"faces" is not an object')
    checked: dict[str, list[list[float]]] = {}
    for userid, encodings in faces.items():
        if not userid.strip() or len(userid) > MAX_USERID_CHARS:
            raise _invalid(f"userid {userid[:40]!r} is empty or too long")
        if not isinstance(encodings, list) or not encodings:
            raise _invalid(f"{userid!r} has no list of encodings")
        checked[userid] = [_encoding(encoding, userid) for encoding in encodings]
    return checked


@bp.route("/backup", methods=["POST", "GET"], strict_slashes=False)
def backup() -> Response:
    """The registry as a file to download (DeepStack: ``POST /v1/backup``)."""
    document = build_backup(services().faces.export())
    stamp = document["created"].replace(":", "-").replace("+00-00", "Z")
    response = current_app.response_class(current_app.json.dumps(document),
                                          mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="visionq-faces-{stamp}.json"'
    return response


@bp.route("/restore", methods=["POST"], strict_slashes=False)
def restore() -> Response:
    """Replace the registry with a backup sent as multipart field ``file`` (DeepStack's
    name) or as the raw JSON body."""
    upload = request.files.get("file")
    if upload is not None:
        raw = upload.read()
    elif request.mimetype == "application/json":
        raw = request.get_data()
    else:
        raise ApiError(400, "missing_file", 'missing file field "file" (multipart/form-data) '
                       "or a JSON body")
    faces = parse_backup(raw)
    services().faces.restore(faces)
    return jsonify({"success": True, "users": len(faces),
                    "encodings": sum(len(e) for e in faces.values())})
