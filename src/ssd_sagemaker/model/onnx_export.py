"""The model artifact as ONNX, to run where MXNet (in the Apache Attic since 2023) is not.

The graph is exported up to MXNet's NMS, not including it: MXNet 1.9.1's `box_nms` converter
suppresses boxes of different classes against each other, while GluonCV's SSD suppresses within
each class. `model.onnx` takes the 1×3×S×S `data` tensor and gives `scores` (1×A×C: each
anchor's probability per class, 0 at or below the decoder's threshold) and `boxes` (1×A×4:
decoded corners in input pixels); `model_info.json` beside it holds what a runner needs to do
what the endpoint does with them: the preprocessing, and box_nms's settings read from the graph
itself (examples/onnx_predict.py is such a runner, held to the endpoint's detections by a test).

MXNet's exporter leaves nodes without a name and weights listed as graph inputs (which cannot
be constant-folded then); together they make onnxruntime 1.19.2's GatherSliceToSplitFusion name
two fused nodes alike and refuse the model. Both are fixed here (either alone lets it load).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
import onnx

from ssd_sagemaker.data.transforms.presets import MEAN, STD
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    INT8_SYMBOL_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelInfo,
    read_model_info,
)
from ssd_sagemaker.storage import serialized, write_files

LOG = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
RUNNER_INFO_FILE = "model_info.json"
RUNNER_FORMAT = "ssd-sagemaker-onnx"
RUNNER_FORMAT_VERSION = 1
INPUT_NAME = "data"
OUTPUT_NAMES = ("scores", "boxes")


@dataclass(frozen=True)
class NmsSettings:
    """What the exported graph's `box_nms` and the slice after it do: a row (anchor, class)
    is a candidate when its score is above `valid_threshold`; the `top_k` best candidates
    (None: all) are suppressed greedily within their class at IoU above `overlap_threshold`
    (None: no NMS in the graph); the first `max_detections` survivors (None: all) are kept."""

    overlap_threshold: float | None
    valid_threshold: float
    top_k: int | None
    max_detections: int | None


@dataclass(frozen=True)
class PreNmsGraph:
    """The names of the graph's nodes giving the per-class scores and the decoded boxes."""

    scores: str
    boxes: str
    nms: NmsSettings


def _not_an_ssd(symbol_file: Path, what: str) -> ClientError:
    return ClientError(f"{symbol_file} is not the SSD graph this container exports ({what}); "
                       f"export a model folder written by this container's `train`.")


def find_pre_nms_outputs(graph: Mapping[str, Any], symbol_file: Path) -> PreNmsGraph:
    """Walk back from the graph's outputs (class ids, scores, boxes sliced from one tensor)
    through GluonCV's `box_nms` and its post-NMS slice, when present, to the concatenation of
    per-class rows (id, score, box): its rows' score is sliced from the masked per-class scores,
    its box is the box decoder's output."""
    nodes = graph["nodes"]

    def node(entry: Sequence[int]) -> dict[str, Any]:
        return nodes[entry[0]]

    sources = {node(head)["inputs"][0][0] for head in graph["heads"]
               if node(head)["op"] == "slice_axis"}
    if len(sources) != 1 or len(graph["heads"]) != 3:
        raise _not_an_ssd(symbol_file, "its three outputs are not slices of one tensor")
    rows, max_detections = nodes[sources.pop()], None
    attributes = rows.get("attrs", {})
    if rows["op"] == "slice_axis" and attributes.get("axis") == "1":
        max_detections = int(attributes["end"])
        rows = node(rows["inputs"][0])
    nms = None
    if rows["op"] == "_contrib_box_nms":
        nms = rows.get("attrs", {})
        if (nms.get("force_suppress", "False") != "False" or nms.get("id_index") != "0"
                or nms.get("in_format", "corner") != "corner"):
            raise _not_an_ssd(symbol_file, "its NMS is not per class on corner boxes")
        rows = node(rows["inputs"][0])
    per_class = [node(entry) for entry in rows.get("inputs", [])]
    if rows["op"] != "Concat" or not per_class or any(
            part["op"] != "Concat" or len(part["inputs"]) != 3 for part in per_class):
        raise _not_an_ssd(symbol_file, "no per-class rows of id, score and box before the NMS")
    score_slice, boxes = node(per_class[0]["inputs"][1]), node(per_class[0]["inputs"][2])
    scores = node(score_slice["inputs"][0]) if score_slice["op"] == "slice_axis" else None
    if scores is None or scores["op"] != "where" or boxes["op"] != "_contrib_box_decode":
        raise _not_an_ssd(symbol_file, "no masked class scores and decoded boxes")
    mask = node(scores["inputs"][0])
    decoder_threshold = float(mask.get("attrs", {}).get("scalar", 0.0))
    settings = NmsSettings(
        overlap_threshold=None if nms is None else float(nms["overlap_thresh"]),
        valid_threshold=max(decoder_threshold,
                            0.0 if nms is None else float(nms.get("valid_thresh", 0.0))),
        top_k=None if nms is None or int(nms.get("topk", -1)) < 0 else int(nms["topk"]),
        max_detections=max_detections)
    return PreNmsGraph(scores["name"], boxes["name"], settings)


def unconvertible_operators(symbol: mx.sym.Symbol) -> dict[str, list[str]]:
    """The operators of `symbol` that MXNet's ONNX exporter has no converter for, each with
    the names of the nodes using it."""
    import mxnet.onnx as mx_onnx

    supported = set(mx_onnx.get_operator_support())
    found: dict[str, list[str]] = {}
    for entry in json.loads(symbol.tojson())["nodes"]:
        if entry["op"] != "null" and entry["op"] not in supported:
            found.setdefault(entry["op"], []).append(entry["name"])
    return found


def _refuse_unconvertible(symbol: mx.sym.Symbol, symbol_file: Path) -> None:
    missing = unconvertible_operators(symbol)
    if missing:
        named = "; ".join(f"{op} (nodes {', '.join(names[:3])}"
                          f"{', …' if len(names) > 3 else ''})" for op, names in missing.items())
        raise ClientError(f"{symbol_file} cannot be converted to ONNX: MXNet's exporter has no "
                          f"converter for {named}. Export a model whose network uses only "
                          f"operators listed by mxnet.onnx.get_operator_support().")


def _tidy(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name every node uniquely, keep weights out of the graph inputs (and drop unused ones),
    and call the outputs
    `OUTPUT_NAMES` (MXNet's exporter names them after internal nodes)."""
    graph = model.graph
    taken = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type.lower()}_{index}"
            while node.name in taken:
                node.name += "_"
            taken.add(node.name)
    used = {name for node in graph.node for name in node.input}
    weights = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    names = {initializer.name for initializer in weights}
    inputs = [value for value in graph.input if value.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)
    renamed = dict(zip((value.name for value in graph.output), OUTPUT_NAMES, strict=True))
    for node in graph.node:
        for index, name in enumerate(node.output):
            node.output[index] = renamed.get(name, name)
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    for value in graph.output:
        value.name = renamed.get(value.name, value.name)
    onnx.checker.check_model(model)
    return model


def onnx_model(symbol: mx.sym.Symbol, params: dict[str, mx.nd.NDArray], image_shape: int,
               symbol_file: Path) -> bytes:
    """The serialized ONNX model of `symbol` (its outputs renamed `OUTPUT_NAMES`) for a
    1×3×S×S float32 input; a graph MXNet cannot convert is a ClientError naming the operator."""
    import mxnet.onnx as mx_onnx

    _refuse_unconvertible(symbol, symbol_file)
    shape = (1, 3, image_shape, image_shape)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # the exporter's INFO lines name its temporary file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = serialized(lambda path: mx_onnx.export_model(
                symbol, params, in_shapes=[shape], in_types=[np.float32], onnx_file_path=path))
    except (AttributeError, NotImplementedError, ValueError, mx.base.MXNetError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise ClientError(f"{symbol_file} cannot be converted to ONNX: "
                          f"{lines[-1] if lines else type(error).__name__}") from None
    finally:
        logging.disable(previous)
    tidy = _tidy(onnx.load_from_string(data))
    return tidy.SerializeToString()


def runner_info(info: ModelInfo, nms: NmsSettings) -> dict[str, Any]:
    """`model_info.json` for a runner: what goes in, what comes out, what to do after."""
    return {
        "format": RUNNER_FORMAT,
        "format_version": RUNNER_FORMAT_VERSION,
        "classes": list(info.classes),
        "base_network": info.base_network,
        "input": {
            "name": INPUT_NAME, "shape": [1, 3, info.image_shape, info.image_shape],
            "layout": "NCHW", "channel_order": "RGB", "dtype": "float32",
            "resize": "to shape, aspect not kept; OpenCV INTER_AREA when both sides shrink, "
                      "INTER_CUBIC when both grow, INTER_LINEAR otherwise",
            "normalisation": "(pixel / 255 - mean) / std per channel, in float32",
            "mean": list(MEAN), "std": list(STD)},
        "outputs": {
            "scores": "1 x anchors x classes: probability of each class, 0 at or below "
                      "nms.valid_threshold",
            "boxes": "1 x anchors x 4: xmin, ymin, xmax, ymax in input pixels"},
        "nms": {**asdict(nms), "per_class": True,
                "order": "candidates sorted by score, stable, class-major (row = class x "
                         "anchors + anchor); IoU of corner boxes without +1"},
        "onnxruntime": {"version_tested": "1.19.2"},
    }


def _load_network(model_dir: Path) -> tuple[mx.sym.Symbol, dict[str, mx.nd.NDArray]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            symbol = mx.sym.load(str(model_dir / SYMBOL_FILE))
            loaded = mx.nd.load(str(model_dir / PARAMS_FILE))
    except mx.base.MXNetError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise ClientError(f"The model files in {model_dir} ({SYMBOL_FILE}, {PARAMS_FILE}) cannot "
                          f"be loaded: {lines[-1] if lines else 'MXNetError'}") from None
    return symbol, {name.split(":", 1)[-1]: value for name, value in loaded.items()}


def export_onnx(model_dir: Path, output: Path) -> list[Path]:
    """Write `model.onnx` and the runner's `model_info.json` for the artifact in `model_dir`
    to `output`, all or nothing. An artifact with an INT8 network exports its float32 one."""
    info = read_model_info(model_dir)
    if info.int8 is not None:
        LOG.info("%s also holds an INT8 network (%s); ONNX gets the float32 network (%s), as "
                 "MXNet's quantized operators have no ONNX converter", model_dir,
                 INT8_SYMBOL_FILE, SYMBOL_FILE)
    symbol, params = _load_network(model_dir)
    pre_nms = find_pre_nms_outputs(json.loads(symbol.tojson()), model_dir / SYMBOL_FILE)
    internals = symbol.get_internals()
    graph = mx.sym.Group([internals[f"{pre_nms.scores}_output"],
                          internals[f"{pre_nms.boxes}_output"]])
    files = {ONNX_FILE: onnx_model(graph, params, info.image_shape, model_dir / SYMBOL_FILE),
             RUNNER_INFO_FILE: (json.dumps(runner_info(info, pre_nms.nms), indent=2)
                                + "\n").encode()}
    written = write_files(output, files, "the ONNX model")
    LOG.info("exported %s to %s: %d classes, %d px input, NMS %s (per class, done by the "
             "runner)", model_dir, output / ONNX_FILE, info.num_classes, info.image_shape,
             pre_nms.nms)
    return written
