"""The classic design: a synchronous Flask app running inference in the request handler
(``BENCH_SYNC_TASK=classify gunicorn --workers 2 'bench.harness.sync_flask:create_app()'``;
``detect,face``: every model in each process, DeepStack's design).  Same plugins, decoding
and result shapes as a visionq worker, so only the architecture differs: no queue, no job
store, one request at a time per process (docs/performance.md).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

from visionq.imaging import ImageError, decode, probe

MODEL_THREADS = int(os.environ.get("BENCH_SYNC_MODEL_THREADS", "1"))
"""Each gunicorn worker loads its own models after the fork, on this many threads."""
PATHS = {"detect": "detection"}
"""DeepStack's path for a task where it is not the task's name."""


def build_model(task: str) -> Any:
    """The visionq plugin for ``task``, loaded, on ``MODEL_THREADS`` threads."""
    if task == "classify":
        from workers.plugins.efficientnet_lite0 import EfficientNetLite0

        model: Any = EfficientNetLite0(num_threads=MODEL_THREADS)
    elif task == "detect":
        from workers.plugins.centernet_mbv3 import CenterNetMbv3

        model = CenterNetMbv3(num_threads=MODEL_THREADS)
    elif task == "face":
        from workers.plugins.face_recognition_model import FaceRecognitionModel

        model = FaceRecognitionModel()
    else:
        raise ValueError(f"unknown task {task!r}")
    model.load()
    return model


def infer(model: Any, data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """Decode exactly as ``workers.runner.run_job`` does, then predict one image."""
    return model.predict([decode(data, max_side=model.max_side_for(probe(data)))], options)[0]


def create_app() -> Flask:
    tasks = os.environ.get("BENCH_SYNC_TASK", "classify").split(",")
    # gunicorn imports the app in each worker (no --preload)
    models = {task: build_model(task) for task in tasks}
    app = Flask(__name__)

    @app.get("/ready")
    def ready() -> Any:
        return jsonify({"tasks": tasks, "models": [m.name for m in models.values()]})

    for task in tasks:
        app.add_url_rule(f"/v1/vision/{task}", f"predict_{task}",
                         _predictor(task, models[task]), methods=["POST"])
        if task in PATHS:
            app.add_url_rule(f"/v1/vision/{PATHS[task]}", f"deepstack_{task}",
                             _predictor(task, models[task]), methods=["POST"])
    return app


def _predictor(task: str, model: Any) -> Any:
    def predict() -> Any:
        upload = request.files.get("image")
        if upload is None:
            return jsonify({"success": False, "error": "missing image"}), 400
        options = {"landmarks": "none"} if task == "face" else {}
        try:
            result = infer(model, upload.read(), options)
        except ImageError as exc:
            return jsonify({"success": False, "error": exc.message, "code": exc.code}), \
                exc.status
        return jsonify({"success": True, **result})

    return predict
