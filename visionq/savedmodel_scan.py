"""A SavedModel's graph read as data (``saved_model.pb`` parsed with TensorFlow's protobuf
classes, nothing executed), refused when it holds an op that reaches outside inference:
files, Python, processes, the network.

What TensorFlow runs of a SavedModel: on ``tf.saved_model.load``, the functions of its
object graph (restore functions of saveable objects, the init op) and, for a TF1 model, the
saver's restore op; on each job, the ``serving_default`` signature.  The saver's *save*
function is only run by ``tf.saved_model.save``, never here.

- ``DENIED_OPS`` are refused anywhere in the graph: in a node of the main graph or of any
  function of its library, reachable from a signature or not (a function nothing seems to
  call is still refused: TensorFlow has more ways to call a function than this module
  follows).  The list starts with the one ``saved_model_cli scan`` uses (``WriteFile``,
  ``ReadFile``, ``PrintV2``), adds Python (``PyFunc``, ``EagerPyFunc``), the other file
  readers and writers (readers, file-backed datasets and tables, summary writers, debug ops
  whose URLs may be ``file://`` or ``grpc://``, memory-mapped constants) and the network
  (RPC, tf.data service, cross-device send/receive, collectives).
- Checkpoint ops are in every SavedModel's saver, so they are allowed there only: writes
  (``SaveV2``, ``MergeV2Checkpoints``...) in the save function alone, reads (``RestoreV2``...)
  in the save or restore function, never in what a signature, the object graph or the rest of
  the graph reaches (there they would read or write a checkpoint anywhere).
- A model using an op TensorFlow does not register fails at load, with TensorFlow's reason.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from visionq.model_errors import UnsafeModelError

SAVED_MODEL_CLI_DENYLIST = frozenset({"WriteFile", "ReadFile", "PrintV2"})
"""``saved_model_cli scan``'s default list (``tensorflow/python/tools/saved_model_cli.py``)."""
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
FILE_OPS = frozenset({
    "MatchingFiles", "ImmutableConst", "FileSystemSetConfiguration", "RecordInput",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
    "GenerateVocabRemapping", "Print",
    # readers
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader",
    "IdentityReaderV2", "LMDBReader", "TextLineReader", "TextLineReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "WholeFileReader", "WholeFileReaderV2", "ReaderRead", "ReaderReadV2",
    "ReaderReadUpTo", "ReaderReadUpToV2", "ReaderRestoreState", "ReaderRestoreStateV2",
    # datasets that read or write files
    "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "TextLineDataset", "CSVDataset", "CSVDatasetV2",
    "ExperimentalCSVDataset", "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset",
    "ExperimentalSqlDataset", "MatchingFilesDataset", "ExperimentalMatchingFilesDataset",
    "CacheDataset", "CacheDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset",
    "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
    "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
    "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "DistributedSave",
    # summaries, debugging and calibration dumps
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "SummaryWriter", "WriteSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "FlushSummaryWriter", "CloseSummaryWriter",
    "StatsAggregatorSetSummaryWriter", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
    "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2", "DumpTensor",
    "CalibrationStatisticsSaver",
})
NETWORK_OPS = frozenset({
    "RpcClient", "RpcServer", "RpcServerRegister", "RpcServerStart", "RpcCall",
    "RpcCheckStatus", "RpcGetValue", "DeleteRpcFutureResource", "RemoteCall",
    "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
    "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2", "Send", "Recv", "_Send",
    "_Recv", "_HostSend", "_HostRecv", "CollectiveReduce", "CollectiveReduceV2",
    "CollectiveReduceV3", "CollectiveGather", "CollectiveGatherV2", "CollectiveBcastSend",
    "CollectiveBcastSendV2", "CollectiveBcastRecv", "CollectiveBcastRecvV2",
    "CollectivePermute", "CollectiveAllToAllV2", "CollectiveAllToAllV3",
    "CollectiveReduceScatterV2", "CollectiveInitializeCommunicator",
    "CollectiveAssignGroupV2", "WorkerHeartbeat",
})
DENIED_OPS = SAVED_MODEL_CLI_DENYLIST | PYTHON_OPS | FILE_OPS | NETWORK_OPS
CHECKPOINT_WRITE_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints"})
CHECKPOINT_READ_OPS = frozenset({"RestoreV2", "Restore", "RestoreSlice", "DTensorRestoreV2"})

_protos: types.ModuleType | None = None
_protos_lock = threading.Lock()


class ProtosMissing(ImportError):
    """TensorFlow (its protobuf classes) is not installed here."""


def saved_model_pb2() -> types.ModuleType:
    """``tensorflow.core.protobuf.saved_model_pb2``.  In a process that has not imported
    TensorFlow (the API), its generated protobuf modules are loaded without running
    ``tensorflow/__init__`` (0.1 s and ~15 MB instead of 7 s and ~650 MB): a stand-in
    ``tensorflow`` package object lends its path for the import, then every
    ``tensorflow*`` entry is taken out of ``sys.modules`` again, so a later real
    ``import tensorflow`` is untouched."""
    global _protos
    with _protos_lock:
        if _protos is not None:
            return _protos
        if "tensorflow" in sys.modules:
            # Lazy on purpose: TensorFlow is optional (visionq[tensorflow], ~1.3 GB) and
            # only its protobuf module is wanted, only when a SavedModel is checked.
            from tensorflow.core.protobuf import saved_model_pb2 as module  # noqa: PLC0415
            _protos = module
            return module
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ProtosMissing("savedmodel models need TensorFlow: pip install "
                                "'visionq[tensorflow]'")
        stand_in = types.ModuleType("tensorflow")
        stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = stand_in
        try:  # the stand-in above lends the package's path: protobuf only, no TensorFlow
            from tensorflow.core.protobuf import saved_model_pb2 as module  # noqa: PLC0415 - as above
        finally:
            for name in [n for n in sys.modules if n == "tensorflow" or
                         n.startswith("tensorflow.")]:
                del sys.modules[name]
        _protos = module
        return module


def check_saved_model(folder: Path) -> None:
    """Raise ``UnsafeModelError`` (``visionq.model_scan``) naming the first op outside
    inference and where it is; ``ValueError`` when ``saved_model.pb`` does not parse."""
    saved_model = saved_model_pb2().SavedModel()
    try:
        saved_model.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"saved_model.pb does not parse: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        problem = _meta_graph_problem(meta_graph)
        if problem is not None:
            raise UnsafeModelError(problem)


def _meta_graph_problem(meta_graph: Any) -> str | None:
    graph = meta_graph.graph_def
    nodes = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    save_nodes = _node_closure(nodes, [_node_name(meta_graph.saver_def.save_tensor_name)])
    restore_nodes = _node_closure(nodes, [_node_name(meta_graph.saver_def.restore_op_name)])
    saver_nodes = save_nodes | restore_nodes
    signature_tensors = [t.name for s in meta_graph.signature_def.values()
                         for t in (*s.inputs.values(), *s.outputs.values())]
    run_nodes = _node_closure(nodes, [*(n for n in nodes if n not in saver_nodes),
                                      *(_node_name(t) for t in signature_tensors)])
    save_fns = _function_closure(functions, _calls(nodes[n] for n in save_nodes))
    restore_fns = _function_closure(functions, _calls(nodes[n] for n in restore_nodes))
    object_fns = set(meta_graph.object_graph_def.concrete_functions)
    run_fns = _function_closure(functions, _calls(nodes[n] for n in run_nodes) | object_fns)
    orphans = set(functions) - save_fns - restore_fns - run_fns
    run_fns |= _function_closure(functions, orphans)

    places = [(f"node {name}", node.op, name in save_nodes, name in restore_nodes,
               name in run_nodes) for name, node in nodes.items()]
    places += [(f"function {fname}", node.op, fname in save_fns, fname in restore_fns,
                fname in run_fns) for fname, function in functions.items()
               for node in function.node_def]
    for where, op, in_save, in_restore, in_run in places:
        if op in DENIED_OPS:
            return f"the SavedModel uses the op {op} ({where}), which reaches outside inference"
        if op in CHECKPOINT_WRITE_OPS and (in_run or in_restore or not in_save):
            return (f"the SavedModel uses the op {op} ({where}) outside its saver's save "
                    f"function: it would write files when loaded or run")
        if op in CHECKPOINT_READ_OPS and (in_run or not (in_save or in_restore)):
            return (f"the SavedModel uses the op {op} ({where}) outside its saver: it "
                    f"would read files when run")
    return None


def _node_name(tensor: str) -> str:
    """``^name``, ``name:0`` -> ``name``."""
    return tensor.lstrip("^").split(":")[0]


def _closure(graph: dict[str, Any], roots: Iterable[str],
             neighbours: Callable[[Any], Iterable[str]]) -> set[str]:
    """``roots`` (those in ``graph``) and every name their ``neighbours`` reach in it,
    transitively."""
    seen: set[str] = set()
    stack = [r for r in roots if r in graph]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(n for n in neighbours(graph[name]) if n in graph)
    return seen


def _node_closure(nodes: dict[str, Any], roots: Iterable[str]) -> set[str]:
    """``roots`` and every node they read (inputs and control inputs), transitively."""
    return _closure(nodes, roots, lambda node: map(_node_name, node.input))


def _calls(node_defs: Iterable[Any]) -> set[str]:
    """Functions the nodes call: by op name, or through a ``func`` / ``list(func)`` attr
    (``PartitionedCall``'s ``f``, ``If``/``While`` branches, a dataset's map function)."""
    called: set[str] = set()
    for node in node_defs:
        called.add(node.op)
        for value in node.attr.values():
            called.update(_attr_functions(value))
    return called


def _attr_functions(value: Any) -> Iterator[str]:
    if value.HasField("func"):
        yield value.func.name
        for nested in value.func.attr.values():
            yield from _attr_functions(nested)
    if value.HasField("list"):
        for func in value.list.func:
            yield func.name


def _function_closure(functions: dict[str, Any], roots: Iterable[str]) -> set[str]:
    """``roots`` (those in the library) and every function they call, transitively."""
    return _closure(functions, roots, lambda function: _calls(function.node_def))
