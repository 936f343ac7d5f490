"""``/v1/callbacks/secret``: the key webhooks of the caller's jobs are signed with
(``visionq.callbacks.signing``).  A caller with an API key gets that key's own secret (one
tenant never learns another's); on an open API, the global one; an admin also gets the
global one (``VISIONQ_CALLBACK_URL``'s)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from api.security import SECRET_EXTENSION, current_caller
from api.services import services
from visionq.callbacks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_S,
    CallbackSecrets,
)

bp = Blueprint("callbacks", __name__, url_prefix="/v1/callbacks")


@bp.get("/secret")
def secret() -> tuple[Response, int, dict[str, str]]:
    caller = current_caller()
    secrets = CallbackSecrets(services().settings.callback_secret,
                              current_app.extensions[SECRET_EXTENSION])
    body: dict[str, object] = {
        "secret": secrets.for_submitter(caller.who if caller.keyed else None),
        "applies_to": "jobs submitted with this API key" if caller.keyed else "every job",
        "scheme": f"{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256, keyed with the secret's "
                  f"UTF-8 bytes, of <{TIMESTAMP_HEADER}>.<raw body>>; refuse timestamps "
                  f"more than {TOLERANCE_S} s from your clock",
    }
    if caller.admin:
        body["global_secret"] = secrets.global_secret
    return jsonify(body), 200, {"Cache-Control": "no-store"}
