"""The exported SSD and how it is loaded for serving: the float32 network as exported, the
INT8 one beside it, or bfloat16 by MXNet AMP; `Predictor.detect` turns one image into the
built-in algorithm's rows, `[class_id, score, xmin, ymin, xmax, ymax]`, coordinates as
fractions of the image size. Shared by `serve`'s workers, `predict` and the benchmarks."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from ssd_sagemaker.data.transforms.presets import network_input
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import ModelInfo, load_exported_network, read_model_info


def load_network(model_dir: Path, context: mx.Context, precision: str) -> gluon.SymbolBlock:
    """The exported network in `precision` (checked by `serving/precision.py`): float32 as
    exported, int8 the quantized network beside it, bfloat16 the float32 one converted by AMP
    (its outputs stay float32)."""
    if precision == "bfloat16":
        return bfloat16_network(load_exported_network(model_dir, context), context)
    net = load_exported_network(model_dir, context, int8=precision == "int8")
    # Static allocation keeps the memory plan and oneDNN's primitives (and the quantized
    # weights) between calls, since every request has the same input shape: measured on
    # ResNet-50 SSD300, a forward 1010 -> 705 ms in float32, 593 -> 216 ms in INT8.
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def bfloat16_network(net: gluon.SymbolBlock, context: mx.Context) -> gluon.SymbolBlock:
    """`net` with its convolutions in bfloat16 (MXNet AMP). MXNet's conversion can leave the
    graph unchanged (seen with the 1.9.1 wheel on a CPU without bfloat16 instructions): that
    would serve float32 under a bfloat16 label, so it is refused instead."""
    from mxnet.contrib import amp

    converted = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=context)
    graph = json.loads(converted._cached_graph[1].tojson())
    if not any(node["op"].startswith("amp_") and "bfloat16" in json.dumps(node.get("attrs", {}))
               for node in graph["nodes"]):
        raise ClientError("SSD_INFERENCE_PRECISION=bfloat16: MXNet converted no layer of the "
                          "network to bfloat16 here; serve with SSD_INFERENCE_PRECISION=float32.")
    return converted


class Predictor:
    """The exported SSD with its metadata; thread-safe (one forward at a time per process)."""

    def __init__(self, model_dir: Path, context: mx.Context | None = None,
                 precision: str = "float32"):
        self.info: ModelInfo = read_model_info(model_dir)
        self.precision = precision
        self._context = context or available_contexts()[0]
        self._net = load_network(model_dir, self._context, precision)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[list[float]]:
        """Detections sorted by score: [class_id, score, xmin, ymin, xmax, ymax] (fractions,
        every box with an area), for an HWC RGB uint8 image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[list[float]]]:
        """`detect` of each image, the images through the network together (one forward of
        `len(images)`): each image's rows are those `detect` gives it alone."""
        with self._lock:
            return batch_detections(self._net, images, self.info.image_shape, self._context)


def batch_detections(net: gluon.Block, images: Sequence[np.ndarray], image_shape: int,
                     context: mx.Context) -> list[list[list[float]]]:
    """An inference-mode SSD's detections in each HWC RGB uint8 image (one forward), as the
    network orders them (by score): [class_id, score, xmin, ymin, xmax, ymax] (fractions)."""
    tensors = [network_input(mx.nd.array(image, dtype=np.uint8), image_shape) for image in images]
    ids, scores, boxes = net(mx.nd.concat(*tensors, dim=0).as_in_context(context))
    ids, scores, boxes = ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
    return [_rows(ids[i], scores[i], boxes[i], image_shape) for i in range(len(images))]


def network_detections(net: gluon.Block, image: np.ndarray, image_shape: int,
                       context: mx.Context) -> list[list[float]]:
    """`batch_detections` of one image (training's pictures of its validation images)."""
    return batch_detections(net, [image], image_shape, context)[0]


def _rows(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray, image_shape: int
          ) -> list[list[float]]:
    """One image's network output as rows (fractions, padding and empty boxes dropped)."""
    boxes = np.clip(boxes / float(image_shape), 0.0, 1.0)
    # Padding rows (id -1) and boxes with no area (seen: 9 of 100 rows scoring 0.91-1.0 on an
    # untrained model, a point or a line after clipping) are no detections.
    keep = (ids[:, 0] >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [[float(c), float(s), *map(float, b)]
            for c, s, b in zip(ids[keep, 0], scores[keep, 0], boxes[keep])]
