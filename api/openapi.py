"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written by hand next to the routes (a small Flask app needs no framework for this) but not
free-standing: option schemas (and their defaults) come from the pydantic models the API
validates with and the model plugins run with (``visionq.options``), the DeepStack
endpoints' defaults from ``api.deepstack``, the statuses from the same error table, and
``tests/api/test_openapi.py`` checks that every Flask route is documented and every
documented path is routed, and runs schemathesis against the live server.
"""

from __future__ import annotations

from typing import Any

from api.deepstack import DETECTION_MIN_CONFIDENCE, RECOGNITION_MIN_CONFIDENCE
from api.options import MAX_OPTIONS_BYTES, OPTION_MODELS
from visionq import __version__
from visionq.callbacks.destinations import MAX_URL_LENGTH
from visionq.jobs import STATUSES
from visionq.options import (
    DEFAULT_TOP_K,
    FACE_DETECTORS,
    MAX_FACE_LIMIT,
    MAX_PREDICTION_COUNT,
)
from visionq.settings import QUEUES

ERROR_TEXT = {
    400: "Bad request: missing or invalid field, not an image, corrupt image, bad options, "
         f"options over {MAX_OPTIONS_BYTES} bytes (options_too_large), face options that would "
         "scan more than VISIONQ_FACE_MAX_SCAN_PIXELS (face_cost_too_high), a callback_url that "
         "is not http(s) (invalid_callback_url) or aims at a non-public address "
         "(callback_refused).",
    401: "Missing or invalid API key (only when keys are configured).",
    403: "An admin key is required (admin_key_required; without VISIONQ_ADMIN_KEYS no caller "
         "is an admin), or a browser request from another origin (cross_origin_refused).",
    404: "Unknown job / userid.",
    409: "The job cannot be revoked (already running or finished), or was revoked.",
    413: "Upload too large (bytes), image too large (pixels) or batch too large.",
    415: "Unsupported image format.",
    429: "Rate limit exceeded; see Retry-After.",
    500: "The worker failed to process the image.",
    501: "Not available in visionq.",
    503: "Queue full (backpressure), Redis or the job history unavailable; see Retry-After.",
    504: "No result within VISIONQ_SYNC_TIMEOUT_S.",
}
SUBMIT_ERRORS = (400, 401, 413, 415, 429, 503)
SYNC_ERRORS = (*SUBMIT_ERRORS, 409, 500, 504)


CALLBACK_URL = {"type": "string", "maxLength": MAX_URL_LENGTH, "description":
                "Webhook: the finished job is POSTed here, signed (docs/webhooks.md). "
                "http(s) only; loopback, link-local and private addresses are refused "
                "(400 callback_refused) unless VISIONQ_CALLBACK_ALLOW lists them."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), ERROR_TEXT[s]) for s in statuses}


def _form(properties: dict[str, Any], required: list[str],
          additional: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {
        **properties, "api_key": {"type": "string", "description": "API key (DeepStack)."}},
        "required": required}
    if additional:
        schema["additionalProperties"] = {"type": "string", "format": "binary"}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


BINARY = {"type": "string", "format": "binary"}
OPTIONS_TEXT = (f"at most {MAX_OPTIONS_BYTES} bytes of JSON: FaceOptions, DetectOptions, "
                "ClassifyOptions or CustomOptions (the task's).")
OPTIONS_JSON = {"type": "object", "description": f"The task's options, {OPTIONS_TEXT}"}
OPTIONS_FORM = {"type": "string", "maxLength": MAX_OPTIONS_BYTES,
                "description": f"A JSON object, {OPTIONS_TEXT}"}
BOX = {name: {"type": "integer"} for name in ("x_min", "y_min", "x_max", "y_max")}
SECURITY = [{"bearer": []}, {"apiKey": []}, {}]


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for task, model in OPTION_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[f"{task.capitalize()}Options"] = schema
    timings = {"type": "object", "properties": {
        name: {"type": ["string", "null"]} for name in ("queued_at", "started_at", "finished_at")
    } | {name: {"type": ["number", "null"]}
         for name in ("queue_wait_ms", "inference_ms", "total_ms")}}
    schemas.update({
        "Error": {"type": "object", "required": ["success", "error", "code"], "properties": {
            "success": {"const": False}, "error": {"type": "string"},
            "code": {"type": "string"}}},
        "Accepted": {"type": "object", "required": ["id", "task", "status", "status_url"],
                     "properties": {"id": {"type": "string"}, "task": {"enum": list(QUEUES)},
                                    "status": {"enum": list(STATUSES)},
                                    "status_url": {"type": "string"}}},
        "BatchAccepted": {"type": "object", "required": ["jobs"], "properties": {
            "jobs": {"type": "array", "items": _ref("Accepted")}}},
        "Job": {"type": "object", "required": ["id", "task", "status", "timings"], "properties": {
            "id": {"type": "string"}, "task": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "result": {"description": "Task result (faces / predictions), null until done."},
            "error": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
            "attempts": {"type": "integer"}, "timings": timings,
            "submitter": {"type": ["string", "null"], "description": "Who submitted it: "
                          "`key:<sha256 prefix>` of the API key, or `ip:<address>`."},
            "callbacks": {"type": "array", "items": _ref("CallbackAttempt"), "description":
                          "Webhook attempts, oldest first (present when the job has a "
                          "callback_url or attempts were recorded; VISIONQ_CALLBACK_URL's "
                          "to admin keys only)."}}},
        "CallbackAttempt": {"type": "object", "required": ["at", "target", "outcome"],
                            "properties": {
            "at": {"type": "string"}, "target": {"enum": ["job", "global"]},
            "attempt": {"type": "integer"}, "status": {"type": ["integer", "null"]},
            "outcome": {"enum": ["delivered", "retrying", "gave_up", "refused"]},
            "error": {"type": ["string", "null"]}, "next_at": {"type": "string"}}},
        "CallbackSecret": {"type": "object", "required": ["secret", "applies_to", "scheme"],
                           "properties": {
            "secret": {"type": "string"}, "applies_to": {"type": "string"},
            "scheme": {"type": "string"}, "global_secret": {"type": "string"}}},
        "JobList": {"type": "object", "required": ["jobs", "next"], "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "next": {"type": ["string", "null"], "description": "URL of the next page."}}},
        "JobSubmitJson": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "description": "Base64 (or a data: URL)."},
            "task": {"enum": list(QUEUES)}, "options": OPTIONS_JSON,
            "callback_url": CALLBACK_URL}},
        "BatchSubmitJson": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "array", "items": {"type": "string"}},
            "task": {"enum": list(QUEUES)}, "options": OPTIONS_JSON,
            "callback_url": CALLBACK_URL}},
        "Detection": _deepstack({"predictions": {"type": "array", "items": {
            "type": "object", "required": ["label", "confidence", *BOX], "properties": {
                "label": {"type": "string"}, "confidence": {"type": "number"}, **BOX}}}}),
        "Faces": _deepstack({"predictions": {"type": "array", "items": {
            "type": "object", "required": ["confidence", *BOX], "properties": {
                "confidence": {"type": "number"}, **BOX}}}}),
        "Recognition": _deepstack({"predictions": {"type": "array", "items": {
            "type": "object", "required": ["userid", "confidence", *BOX], "properties": {
                "userid": {"type": "string"}, "confidence": {"type": "number"}, **BOX,
                "distance": {"type": ["number", "null"], "description": "Euclidean distance "
                             "to the nearest registered person (null: nobody registered)."},
                "quality": {"type": "object", "properties": {
                    "size_px": {"type": "integer"}, "sharpness": {"type": "number"}}},
                "subjects": {"type": "array", "description": "With prediction_count: the "
                             "nearest registered people (CompreFace's shape).", "items": {
                                 "type": "object", "properties": {
                                     "subject": {"type": "string"},
                                     "similarity": {"type": "number"},
                                     "distance": {"type": "number"}}}}}}}}),
        "Registered": _deepstack({"message": {"type": "string"}, "userid": {"type": "string"},
                                  "encodings": {"type": "integer"},
                                  "skipped": {"type": "integer"}}),
        "FaceList": _deepstack({"faces": {"type": "array", "items": {"type": "string"}}}),
        "Deleted": _deepstack({"message": {"type": "string"}, "userid": {"type": "string"},
                               "deleted": {"type": "boolean"}}),
        "Match": {"anyOf": [
            _deepstack({"similarity": {"type": "number", "minimum": 0, "maximum": 1}}),
            {"type": "object", "required": ["success", "error"], "description":
             "No face in one image (DeepStack answers this in a 200).", "properties": {
                 "success": {"const": False}, "error": {"type": "string"}}}]},
        "Restored": {"type": "object", "required": ["success", "users", "encodings"],
                     "properties": {"success": {"const": True}, "users": {"type": "integer"},
                                    "encodings": {"type": "integer"}}},
        "Classification": _deepstack({
            "label": {"type": ["string", "null"]}, "confidence": {"type": "number"},
            "predictions": {"type": "array", "items": {
                "type": "object", "required": ["label", "confidence"], "properties": {
                    "label": {"type": "string"}, "confidence": {"type": "number"}}}}}),
        "Stats": {"type": "object", "required": ["queues"], "properties": {
            "queues": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {name: {"type": "integer"} for name in (
                    "length", "running", "succeeded", "failed", "workers", "max_backlog")}}},
            "flower_port": {"type": "integer"}, "auth": {"type": "boolean"}}},
    })
    return schemas


def _min_confidence(default: float) -> dict[str, Any]:
    return {"type": "string", "default": f"{default:g}", "description": "A number between 0 "
            "and 1: predictions scored below are left out."}


def _deepstack(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["success", "duration", *properties],
            "properties": {"success": {"const": True}, "duration": {"type": "integer"},
                           **properties}}


def _sync(summary: str, schema: str, form: dict[str, Any], *extra_errors: int,
          admin: bool = False) -> dict[str, Any]:
    statuses = sorted({*SYNC_ERRORS, *extra_errors, *((403,) if admin else ())})
    return {"post": {"tags": ["DeepStack"], "summary": summary, "requestBody": form,
                     "responses": {"200": _json(_ref(schema), "OK"), **_errors(*statuses)}}}


def _paths() -> dict[str, Any]:
    def image_form(min_confidence: float, **extra: Any) -> dict[str, Any]:
        return _form({"image": BINARY, "min_confidence": _min_confidence(min_confidence),
                      **extra}, ["image"])

    detector = {"face_detector": {"enum": list(FACE_DETECTORS), "description": "The face "
                                  "detector (default: VISIONQ_FACE_DETECTOR, yunet)."}}

    task_param = {"name": "task", "in": "query", "schema": {"enum": list(QUEUES)}}
    idem = {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string",
            "maxLength": 255}, "description": "Same key (per caller) -> same job(s), "
            "no second enqueue, for VISIONQ_IDEMPOTENCY_TTL_S."}
    submit_body = {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": BINARY, "task": {"enum": list(QUEUES)},
            "options": OPTIONS_FORM, "callback_url": CALLBACK_URL}}},
        "application/json": {"schema": _ref("JobSubmitJson")}}}
    batch_body = {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "task": {"enum": list(QUEUES)}, "options": OPTIONS_FORM,
            "callback_url": CALLBACK_URL},
            "additionalProperties": BINARY}},
        "application/json": {"schema": _ref("BatchSubmitJson")}}}
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    history_filters = [
        {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
        {"name": "task", "in": "query", "schema": {"enum": list(QUEUES)}},
        {"name": "key", "in": "query", "schema": {"type": "string"}, "description":
         "Submitter: `key:<sha256 prefix>` of an API key, or `ip:<address>` (open API)."},
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description":
         "Queued at or after: Unix seconds or ISO 8601."},
        {"name": "until", "in": "query", "schema": {"type": "string"}, "description":
         "Queued before: Unix seconds or ISO 8601."}]
    face_list = {"tags": ["DeepStack"], "summary": "Registered userids",
                 "responses": {"200": _json(_ref("FaceList"), "OK"), **_errors(401, 429)}}
    return {
        "/v1/jobs": {
            "post": {"tags": ["Jobs"], "summary": "Submit one image (202 + job id; with "
                     "?wait=seconds, 200 + the finished job if it finishes in time)",
                     "parameters": [task_param, idem, {
                         "name": "wait", "in": "query", "schema": {"type": "number",
                                                                   "minimum": 0},
                         "description": "Wait up to this many seconds for the result: 200 "
                         "with the finished job, or 202 as without it."}],
                     "requestBody": submit_body,
                     "responses": {"200": _json(_ref("Job"), "Finished within ?wait="),
                                   "202": _json(_ref("Accepted"), "Accepted"),
                                   **_errors(*SUBMIT_ERRORS)}},
            "get": {"tags": ["Jobs"], "summary": "Jobs, newest first (Redis, then the "
                    "history)", "parameters": [
                *history_filters,
                {"name": "source", "in": "query", "schema": {"enum": ["auto", "live",
                                                                       "history"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": 500}},
                {"name": "before", "in": "query", "schema": {"type": "number"},
                 "description": "Cursor: take it from the `next` URL."},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "History cursor: take it from the `next` URL."}],
                "responses": {"200": _json(_ref("JobList"), "OK"),
                              **_errors(400, 401, 429, 503)}}},
        "/v1/jobs/export": {"get": {
            "tags": ["Jobs"], "summary": "The job history as CSV or JSON lines (streamed)",
            "parameters": [{"name": "format", "in": "query",
                            "schema": {"enum": ["csv", "jsonl"]}}, *history_filters],
            "responses": {"200": {"description": "OK", "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}}}},
                **_errors(400, 401, 429, 503)}}},
        "/v1/jobs/batch": {"post": {
            "tags": ["Jobs"], "summary": "Submit many images (any file field names)",
            "parameters": [task_param, idem], "requestBody": batch_body,
            "responses": {"202": _json(_ref("BatchAccepted"), "Accepted"),
                          **_errors(*SUBMIT_ERRORS)}}},
        "/v1/jobs/{job_id}": {
            "get": {"tags": ["Jobs"], "summary": "A job (long-poll with ?wait=seconds)",
                    "parameters": [job_id, {"name": "wait", "in": "query",
                                            "schema": {"type": "number", "minimum": 0}}],
                    "responses": {"200": _json(_ref("Job"), "OK"),
                                  **_errors(400, 401, 404, 429, 503)}},
            "delete": {"tags": ["Jobs"], "summary": "Revoke a queued job (submitter or admin)",
                       "parameters": [job_id],
                       "responses": {"200": _json(_ref("Job"), "Revoked"),
                                     **_errors(401, 403, 404, 409, 429)}}},
        "/v1/vision/detection": _sync("Objects (COCO-80)", "Detection",
                                      image_form(DETECTION_MIN_CONFIDENCE)),
        "/v1/vision/face": _sync("Face boxes", "Faces",
                                 image_form(DETECTION_MIN_CONFIDENCE, **detector)),
        "/v1/vision/face/recognize": _sync("Who is in the image", "Recognition", _form({
            "image": BINARY, "min_confidence": _min_confidence(RECOGNITION_MIN_CONFIDENCE),
            "limit": {"type": "integer", "minimum": 0, "maximum": MAX_FACE_LIMIT,
                      "default": 0, "description": "CompreFace: only the N largest faces "
                      "(0: all)."},
            "det_prob_threshold": {"type": "number", "minimum": 0, "maximum": 1,
                                   "description": "CompreFace: drop faces whose detection "
                                   "confidence is below it (default: keep all)."},
            "prediction_count": {"type": "integer", "minimum": 1,
                                 "maximum": MAX_PREDICTION_COUNT, "description": "CompreFace: "
                                 "add `subjects`, the N nearest registered people per face."},
            **detector}, ["image"])),
        "/v1/vision/face/register": _sync(
            "Register a userid's faces (largest face per image, any file field names; "
            "replaces, or appends with append=true)", "Registered",
            _form({"userid": {"type": "string"}, "append": {"type": "string"}, **detector},
                  ["userid"], additional=True)),
        "/v1/vision/face/list": {"post": face_list, "get": face_list},
        "/v1/vision/face/delete": {"post": {
            "tags": ["DeepStack"], "summary": "Forget a userid (200 even if unknown)",
            "requestBody": _form({"userid": {"type": "string"}}, ["userid"]),
            "responses": {"200": _json(_ref("Deleted"), "OK"),
                          **_errors(400, 401, 413, 429)}}},
        "/v1/vision/face/match": _sync(
            "Similarity 0-1 of the largest faces of two images (any two file fields)",
            "Match", _form({"image1": BINARY, "image2": BINARY, **detector}, [],
                           additional=True)),
        "/v1/vision/classify": _sync(
            f"ImageNet labels (top_k, default {DEFAULT_TOP_K})", "Classification",
            _form({"image": BINARY, "min_confidence": _min_confidence(0.0),
                   "top_k": {"type": "string", "default": str(DEFAULT_TOP_K),
                             "description": "How many labels to return."}}, ["image"])),
        "/v1/vision/scene": {"post": {
            "tags": ["DeepStack"], "summary": "Not available (no Places365 model)",
            "responses": _errors(401, 413, 429, 501)}},
        "/v1/backup": {method: {
            "tags": ["DeepStack"], "summary": "Download the known faces (admin)",
            "responses": {"200": _json({"type": "object"}, "Backup file (JSON)"),
                          **_errors(401, 403, 429)}} for method in ("get", "post")},
        "/v1/restore": {"post": {
            "tags": ["DeepStack"], "summary": "Replace the known faces with a backup (admin)",
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                   "properties": {"file": BINARY}}},
                "application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _json(_ref("Restored"), "Restored"),
                          **_errors(400, 401, 403, 413, 429)}}},
        "/v1/callbacks/secret": {"get": {
            "tags": ["Jobs"], "summary": "The key signing the webhooks of the caller's jobs "
            "(the API key's own; on an open API the global one)",
            "responses": {"200": _json(_ref("CallbackSecret"), "OK"), **_errors(401, 429)}}},
        "/v1/stats": {"get": {"tags": ["Service"], "summary": "Queues board",
                              "responses": {"200": _json(_ref("Stats"), "OK"),
                                            **_errors(401, 429)}}},
        "/healthz": {"get": {"tags": ["Service"], "summary": "The process is up", "security": [],
                             "responses": {"200": _json({"type": "object"}, "OK")}}},
        "/readyz": {"get": {"tags": ["Service"], "summary": "Redis and a worker per queue",
                            "security": [],
                            "responses": {"200": _json({"type": "object"}, "Ready"),
                                          "503": _json({"type": "object"}, "Not ready")}}},
        "/metrics": {"get": {"tags": ["Service"], "summary": "Prometheus metrics",
                             "security": [], "responses": {"200": {
                                 "description": "OK", "content": {"text/plain": {}}}}}},
        "/openapi.json": {"get": {"tags": ["Service"], "summary": "This document",
                                  "security": [], "responses": {"200": _json(
                                      {"type": "object"}, "OK")}}},
        "/docs": {"get": {"tags": ["Service"], "summary": "Interactive docs", "security": [],
                          "responses": {"200": {"description": "HTML",
                                                "content": {"text/html": {}}}}}},
        "/": {"get": {"tags": ["Service"], "summary": "Web page", "security": [],
                      "responses": {"200": {"description": "HTML",
                                            "content": {"text/html": {}}}}}},
    }


def _custom_paths() -> dict[str, Any]:
    """Custom models (``api.custom``)."""
    listing = {"tags": ["Custom models"], "summary": "Names of the custom models "
               "(CodeProject.AI); unreadable manifests under errors",
               "responses": {"200": _json(_deepstack({
                   "models": {"type": "array", "items": {"type": "string"}},
                   "errors": {"type": "array", "items": {"type": "object"}}}), "OK"),
                   **_errors(401, 429)}}
    details = {**listing, "summary": "The custom models with their manifests' details",
               "responses": {"200": _json(_deepstack({
                   "models": {"type": "array", "items": {"type": "object"}},
                   "errors": {"type": "array", "items": {"type": "object"}}}), "OK"),
                   **_errors(401, 429)}}
    manifest = {key: {"type": "string"} for key in (
        "name", "kind", "format", "labels", "input_size", "layout", "resize", "channels",
        "mean", "std", "softmax", "score_threshold", "nms_iou", "max_detections", "version")}
    return {
        "/v1/vision/custom/{name}": {"post": {
            "tags": ["Custom models"], "summary": "Run custom model <name> (DeepStack shape)",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": _form({"image": BINARY, "min_confidence": _min_confidence(
                DETECTION_MIN_CONFIDENCE)}, ["image"]),
            "responses": {"200": _json(_deepstack({"predictions": {"type": "array"}}), "OK"),
                          **_errors(*sorted({*SYNC_ERRORS, 404}))}}},
        "/v1/vision/custom/list": {"post": listing, "get": listing},
        "/v1/vision/listmodels": {"post": details, "get": details},
        "/v1/vision/addmodel": {"post": {
            "tags": ["Custom models"], "summary": "Add or replace a custom model (admin)",
            "requestBody": _form({"model": BINARY, "manifest": {
                "type": "string", "description": "The manifest as JSON (or one field per "
                "key)"}, **manifest}, ["model"]),
            "responses": {"200": _json(_deepstack({"message": {"type": "string"},
                                                    "model": {"type": "object"}}), "Added"),
                          **_errors(400, 401, 403, 413, 429)},
            "description": "The model is checked before it lands: 400 unsafe_model when it "
            "would run more than inference (file, process, Python or network ops; ONNX custom "
            "domains or external data outside its folder; Keras Lambda layers), 413 "
            "model_too_large past VISIONQ_MODEL_MAX_BYTES (a zip: uncompressed, and 1000 "
            "entries)."}},
        "/v1/vision/deletemodel": {"post": {
            "tags": ["Custom models"], "summary": "Delete a custom model (admin)",
            "requestBody": _form({"name": {"type": "string"}}, ["name"]),
            "responses": {"200": _json(_deepstack({"message": {"type": "string"},
                                                    "name": {"type": "string"}}), "Deleted"),
                          **_errors(400, 401, 403, 404, 413, 429)}}},
    }


def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "visionq", "version": __version__, "description": (
            "Image inference over REST: an asynchronous job API (/v1/jobs) and "
            "DeepStack-compatible synchronous endpoints (/v1/vision/*). When "
            "VISIONQ_API_KEYS is set, send `Authorization: Bearer <key>`, `X-API-Key` or "
            "the form field `api_key`; a key sees only the jobs it submitted, an admin key "
            "(VISIONQ_ADMIN_KEYS) all. Every route answers 421 host_not_allowed for a Host "
            "outside VISIONQ_ALLOWED_HOSTS (IP addresses, localhost, single-label and "
            ".local/.lan/.internal/.home.arpa/.svc names are allowed by default) and 403 "
            "cross_origin_refused to a browser on an origin not in VISIONQ_CORS_ORIGINS.")},
        "security": SECURITY,
        "paths": {**_paths(), **_custom_paths()},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header",
                                           "name": "X-API-Key"}},
        },
    }
