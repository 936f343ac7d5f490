"""Issue 30, item 5: a custom model runs no code but inference.

The hostile models are built here: a SavedModel whose serving function calls
``tf.io.write_file`` (the table's row: before the fix ``addmodel`` answered 200 and one
image to ``/v1/vision/custom/<name>`` wrote the file on the worker's host), zip bombs
(1 GiB of zeros in a ~1 MB upload; too many entries; a header that lies about the size),
ONNX models with a custom-domain op or external data outside their folder, and a Keras
model with a ``Lambda`` layer.  Each is refused with nothing written; legitimate models
keep working (``tests/api/test_custom_api.py``)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory
from tests.conftest import WorkerPool
from tests.workers.custom_builders import COLOUR_LABELS, colour_manifest, png, write_model
from visionq.custom_models import CUSTOM_QUEUE
from visionq.model_scan import MAX_ZIP_ENTRIES

tf = pytest.importorskip("tensorflow", reason="visionq[tensorflow] is not installed")

ADMIN = {"X-API-Key": "admin"}
"""Sent on addmodel: it works whether or not addmodel is admin-only without keys."""
RED = png((255, 0, 0))


def hostile_saved_model(folder: Path, victim: Path) -> Path:
    """A colour 'classifier' whose serving function also writes ``victim``."""

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def serve(self, images: Any) -> dict[str, Any]:
            tf.io.write_file(str(victim), "written by a custom model")
            return {"scores": tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]) * 10)}

    module = Hostile()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def zip_folder(folder: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"model/{path.relative_to(folder)}")
    return out.getvalue()


def add_model(client: FlaskClient, manifest: dict[str, Any], model: bytes,
              filename: str) -> Any:
    return client.post("/v1/vision/addmodel", headers=ADMIN, data={
        "model": (io.BytesIO(model), filename), "manifest": json.dumps(manifest)},
        content_type="multipart/form-data")


def installed(models_dir: Path) -> list[str]:
    """Everything under the models folder (staging folders included)."""
    root = models_dir / CUSTOM_QUEUE
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture()
def api(make_client: AppFactory, idle_redis_url: str, tmp_path: Path) -> FlaskClient:
    return make_client(idle_redis_url, models_dir=str(tmp_path / "models"), admin_keys="admin")


def test_savedmodel_that_writes_a_file_is_refused_at_addmodel(api: FlaskClient,
                                                              tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    model = zip_folder(hostile_saved_model(tmp_path / "hostile", victim))
    response = add_model(api, colour_manifest("hostile", "savedmodel"), model, "m.zip")
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "unsafe_model" and "WriteFile" in body["error"], body
    assert installed(tmp_path / "models") == []
    assert not victim.exists()


def test_legitimate_savedmodel_is_accepted(api: FlaskClient, tmp_path: Path) -> None:
    """A Keras export has SaveV2/RestoreV2/MergeV2Checkpoints in its saver functions:
    allowed there, since loading and inference never run them."""
    from tests.workers.custom_builders import colour_keras_model

    colour_keras_model().export(str(tmp_path / "fine"), format="tf_saved_model", verbose=False)
    response = add_model(api, colour_manifest("fine", "savedmodel"),
                         zip_folder(tmp_path / "fine"), "fine.zip")
    assert response.status_code == 200, response.get_json()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def custom_worker(redis_url: str, models_dir: Path) -> Iterator[subprocess.Popen]:
    pool = WorkerPool()
    yield pool.start(redis_url, CUSTOM_QUEUE, "custom-safety",
                     VISIONQ_MODELS_DIR=str(models_dir))
    pool.stop_all()


def test_savedmodel_put_in_the_folder_fails_its_job_not_the_worker(
        make_client: AppFactory, redis_url: str, models_dir: Path,
        custom_worker: subprocess.Popen, tmp_path: Path) -> None:
    """The worker scans again before loading: a model copied into the folder by other
    means than addmodel is refused there, and the worker keeps serving."""
    victim = tmp_path / "victim.txt"
    root = models_dir / CUSTOM_QUEUE
    hostile_saved_model(root / "dropped", victim)
    write_model(root, colour_manifest("dropped", "savedmodel"), {})
    client = make_client(redis_url, models_dir=str(models_dir), sync_timeout_s=120)
    response = client.post("/v1/vision/custom/dropped", data={
        "image": (io.BytesIO(RED), "red.png")}, content_type="multipart/form-data")
    assert response.status_code == 500, response.get_json()
    assert "WriteFile" in response.get_json()["error"], response.get_json()
    assert response.get_json()["code"] == "unsafe_model", response.get_json()
    assert not victim.exists()
    assert custom_worker.poll() is None

    tf_model = __import__("tests.workers.custom_builders", fromlist=["x"]).colour_keras_model()
    tf_model.export(str(root / "honest"), format="tf_saved_model", verbose=False)
    write_model(root, colour_manifest("honest", "savedmodel"), {})
    served = client.post("/v1/vision/custom/honest", data={
        "image": (io.BytesIO(RED), "red.png")}, content_type="multipart/form-data")
    assert served.status_code == 200 and served.get_json()["label"] == "red", served.get_json()


def bomb_zip(uncompressed_bytes: int) -> bytes:
    """A SavedModel-shaped zip whose variables file is ``uncompressed_bytes`` of zeros,
    written in chunks (never held in memory)."""
    out = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model/saved_model.pb", b"")
        with archive.open("model/variables/variables.data-00000-of-00001", "w",
                          force_zip64=True) as entry:
            for _ in range(uncompressed_bytes // len(chunk)):
                entry.write(chunk)
    return out.getvalue()


def test_zip_bomb_is_refused_before_extracting(api: FlaskClient, tmp_path: Path) -> None:
    bomb = bomb_zip(1 << 30)
    assert len(bomb) < 2 << 20  # 1 GiB of zeros in about 1 MB
    response = add_model(api, colour_manifest("bomb", "savedmodel"), bomb, "bomb.zip")
    assert response.status_code == 413, response.get_json()
    body = response.get_json()
    assert body["code"] == "model_too_large" and "VISIONQ_MODEL_MAX_BYTES" in body["error"]
    assert installed(tmp_path / "models") == []


def test_zip_with_too_many_entries_is_refused(api: FlaskClient, tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/saved_model.pb", b"")
        for i in range(MAX_ZIP_ENTRIES + 1):
            archive.writestr(f"model/assets/{i}", b"")
    response = add_model(api, colour_manifest("many", "savedmodel"), out.getvalue(), "m.zip")
    assert response.status_code == 413, response.get_json()
    assert response.get_json()["code"] == "model_too_large"
    assert installed(tmp_path / "models") == []


def lying_zip(real_bytes: int, declared_bytes: int) -> bytes:
    """One entry of ``real_bytes`` zeros whose local and central headers say
    ``declared_bytes``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/saved_model.pb", bytes(real_bytes))
    data = bytearray(out.getvalue())
    assert data[:4] == b"PK\x03\x04"
    struct.pack_into("<I", data, 22, declared_bytes)  # local header: uncompressed size
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared_bytes)
    return bytes(data)


def test_zip_whose_header_lies_about_its_size_is_refused(api: FlaskClient,
                                                         tmp_path: Path) -> None:
    response = add_model(api, colour_manifest("liar", "savedmodel"),
                         lying_zip(8 << 20, 1000), "liar.zip")
    assert response.status_code in (400, 413), response.get_json()
    assert response.get_json()["code"] in ("invalid_model", "model_too_large")
    assert installed(tmp_path / "models") == []


@pytest.mark.parametrize("name", ["model/../../escaped", "/tmp/escaped-absolute"])
def test_zip_paths_outside_the_folder_are_refused(api: FlaskClient, tmp_path: Path,
                                                  name: str) -> None:
    """Already refused before issue 30 (kept as a regression test)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model/saved_model.pb" if name.startswith("model/") else
                         "saved_model.pb", b"")
        archive.writestr(name, b"escaped")
    response = add_model(api, colour_manifest("slip", "savedmodel"), out.getvalue(), "m.zip")
    assert response.status_code == 400, response.get_json()
    assert "unsafe path" in response.get_json()["error"]
    assert installed(tmp_path / "models") == []
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped-absolute").exists()


def onnx_model(*, domain: str = "", external: str | None = None) -> bytes:
    """A one-node ONNX classifier: ``Identity`` (or an op of ``domain``), optionally with
    an initializer whose data is 'stored' at ``external``."""
    from onnx import TensorProto, helper

    node = helper.make_node("Exec" if domain else "ReduceMean", ["images"], ["scores"],
                            domain=domain, **({} if domain else {"axes": [2, 3],
                                                                  "keepdims": 0}))
    initializers = []
    if external is not None:
        tensor = helper.make_tensor("leak", TensorProto.FLOAT, [64], [0.0] * 64)
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "256")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        initializers.append(tensor)
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
        initializer=initializers)
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(("model", "named"), [
    (lambda: onnx_model(domain="evil.example"), "evil.example"),
    (lambda: onnx_model(external="../../etc/passwd"), "../../etc/passwd"),
    (lambda: onnx_model(external="/etc/passwd"), "/etc/passwd"),
], ids=["custom-domain", "external-data-dotdot", "external-data-absolute"])
def test_onnx_custom_ops_and_outside_data_are_refused(api: FlaskClient, tmp_path: Path,
                                                      model: Any, named: str) -> None:
    pytest.importorskip("onnx")
    manifest = {**colour_manifest("onx", "onnx")}
    response = add_model(api, manifest, model(), "m.onnx")
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "unsafe_model" and named in body["error"], body
    assert installed(tmp_path / "models") == []


def test_plain_onnx_model_is_accepted(api: FlaskClient) -> None:
    pytest.importorskip("onnx")
    response = add_model(api, colour_manifest("plain", "onnx"), onnx_model(), "m.onnx")
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_layer_is_refused(api: FlaskClient, tmp_path: Path, suffix: str) -> None:
    import keras

    inputs = keras.Input((16, 16, 3))
    doubled = keras.layers.Lambda(lambda x: x * 2)(inputs)
    outputs = keras.layers.Dense(len(COLOUR_LABELS), activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(doubled))
    path = tmp_path / f"lambda{suffix}"
    keras.Model(inputs, outputs).save(path)
    response = add_model(api, colour_manifest("lam", "keras"), path.read_bytes(), path.name)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "unsafe_model" and "Lambda" in body["error"], body
    assert installed(tmp_path / "models") == []


def test_tflite_flex_op_is_refused(api: FlaskClient, tmp_path: Path) -> None:
    """A TensorFlow op smuggled into a .tflite through the Flex delegate (LiteRT has no
    Flex delegate, so it would fail at load; addmodel used to accept it)."""
    victim = tmp_path / "victim.txt"

    class Flex(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def serve(self, images: Any) -> Any:
            tf.io.write_file(str(victim), "written by a custom model")
            return tf.reduce_mean(images, axis=[1, 2])

    module = Flex()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    response = add_model(api, colour_manifest("flex", "tflite"), converter.convert(), "m.tflite")
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "unsafe_model" and "FlexWriteFile" in body["error"], body
    assert installed(tmp_path / "models") == [] and not victim.exists()


def test_checkpoint_write_outside_the_saver_is_refused(api: FlaskClient,
                                                       tmp_path: Path) -> None:
    """``SaveV2`` is allowed in the saver's save function only: in a serving function it
    writes a checkpoint anywhere."""
    prefix = tmp_path / "planted"

    class Saver(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def serve(self, images: Any) -> dict[str, Any]:
            tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=["x"], shape_and_slices=[""],
                              tensors=[images])
            return {"scores": tf.reduce_mean(images, axis=[1, 2])}

    module = Saver()
    tf.saved_model.save(module, str(tmp_path / "saver"),
                        signatures={"serving_default": module.serve})
    response = add_model(api, colour_manifest("saver", "savedmodel"),
                         zip_folder(tmp_path / "saver"), "m.zip")
    assert response.status_code == 400, response.get_json()
    assert "SaveV2" in response.get_json()["error"]
    assert installed(tmp_path / "models") == []
    assert not list(tmp_path.glob("planted*"))


def test_the_deny_lists_name_real_tensorflow_ops() -> None:
    """A misspelt op name would deny nothing."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    from visionq.savedmodel_scan import CHECKPOINT_READ_OPS, CHECKPOINT_WRITE_OPS, DENIED_OPS

    registered = op_def_pb2.OpList()
    registered.ParseFromString(pywrap_tf_session.TF_GetBuffer(
        pywrap_tf_session.TF_GetAllOpList()))
    names = {op.name for op in registered.op}
    assert not (DENIED_OPS | CHECKPOINT_READ_OPS | CHECKPOINT_WRITE_OPS) - names


CHECK_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
from visionq.model_scan import UnsafeModelError, check_model
try:
    check_model("savedmodel", Path(sys.argv[1]), max_bytes=1 << 30, required=True)
except UnsafeModelError as exc:
    print("refused:", exc)
print("imported:", sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
"""


def test_the_api_reads_savedmodels_without_importing_tensorflow(tmp_path: Path) -> None:
    """The API parses ``saved_model.pb`` with TensorFlow's protobuf classes alone (not the
    7 s / 650 MB ``import tensorflow``), and leaves ``sys.modules`` as it found it."""
    hostile_saved_model(tmp_path / "hostile", tmp_path / "victim.txt")
    done = subprocess.run([sys.executable, "-c", CHECK_IN_A_FRESH_PROCESS,
                           str(tmp_path / "hostile")], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "refused: the SavedModel uses the op WriteFile" in done.stdout, done.stdout
    assert "imported: []" in done.stdout, done.stdout
    assert not (tmp_path / "victim.txt").exists()


def tf1_saved_model(folder: Path, planted: Path | None = None) -> Path:
    """A TF1 SavedModel (saver ops in the main graph, not in functions); with ``planted``,
    its output also depends on a ``SaveV2`` writing there."""
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as session:
        images = tf1.placeholder(tf.float32, [1, 16, 16, 3], name="images")
        weights = tf1.get_variable("w", initializer=tf.eye(3) * 10)
        scores = tf.matmul(tf.reduce_mean(images, axis=[1, 2]), weights)
        if planted is not None:
            save = tf.raw_ops.SaveV2(prefix=str(planted), tensor_names=["w"],
                                     shape_and_slices=[""], tensors=[weights])
            with tf.control_dependencies([save]):
                scores = tf.identity(scores)
        session.run(tf1.global_variables_initializer())
        builder = tf1.saved_model.Builder(str(folder))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": tf1.saved_model.predict_signature_def(
                {"images": images}, {"scores": tf.nn.softmax(scores)})})
        builder.save()
    return folder


def test_tf1_saver_in_the_main_graph_is_allowed_but_not_under_a_signature(
        tmp_path: Path) -> None:
    from visionq.model_scan import UnsafeModelError
    from visionq.savedmodel_scan import check_saved_model

    check_saved_model(tf1_saved_model(tmp_path / "plain"))
    with pytest.raises(UnsafeModelError, match="SaveV2"):
        check_saved_model(tf1_saved_model(tmp_path / "planted", tmp_path / "planted-ckpt"))
    assert not list(tmp_path.glob("planted-ckpt*"))
