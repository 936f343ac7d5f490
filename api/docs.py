"""``/openapi.json`` and ``/docs``: Swagger UI 5 (OpenAPI 3.1) from the assets that the PyPI
package ``flask-swagger-ui`` ships (only its ``dist/`` folder is used), so nothing is
fetched from a CDN.  Without that package ``/docs`` is a plain list of the operations."""

from __future__ import annotations

import html
import importlib.util
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, send_from_directory

from api.openapi import build_spec

bp = Blueprint("docs", __name__)

ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
          "favicon-32x32.png", "index.css")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>visionq API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: true});
</script></body></html>"""


@cache
def _spec() -> dict:
    return build_spec()


@cache
def assets_dir() -> Path | None:
    spec = importlib.util.find_spec("flask_swagger_ui")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "dist" / "swagger-ui-bundle.js").is_file():
            return Path(folder) / "dist"
    return None


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(_spec())


@bp.get("/docs")
def docs() -> Response:
    if assets_dir() is not None:
        return Response(PAGE, mimetype="text/html")
    rows = "".join(
        f"<li><code>{method.upper()} {html.escape(path)}</code> {html.escape(op['summary'])}</li>"
        for path, item in _spec()["paths"].items() for method, op in item.items())
    return Response("<!doctype html><title>visionq API</title><h1>visionq API</h1>"
                    "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. "
                    "Install <code>flask-swagger-ui</code> for interactive docs.</p>"
                    f"<ul>{rows}</ul>", mimetype="text/html")


@bp.get("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    folder = assets_dir()
    if folder is None or name not in ASSETS:
        abort(404)
    return send_from_directory(folder, name, max_age=86400)
