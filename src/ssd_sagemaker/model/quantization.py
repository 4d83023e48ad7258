"""The INT8 network, made at training time from the exported float32 one (`quantize=int8`).

MXNet's `quantize_net_v2` (oneDNN) quantizes every convolution it can and calibrates the
ranges of their outputs ("naive": the min/max seen on sample images, as GluonCV's INT8 SSD
script does). GluonCV's script keeps the heads' `flatten` and `concat` layers in float32; the
convolutions whose quantization loses too much are found by measurement: the candidates below,
from none to the first convolution and the class/box heads, are tried in turn, and the first
whose detections agree with the float32 network's (VOC07 mAP, float32 detections scoring at
least `REFERENCE_SCORE` taken as ground truth) to `FIDELITY_GOAL` on the calibration images is
kept. The float32 network is not changed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.contrib.quantization import quantize_net_v2

from ssd_sagemaker.evaluation import DetectionMAP
from ssd_sagemaker.model.artifact import (
    INT8_PARAMS_FILE,
    INT8_SYMBOL_FILE,
    SYMBOL_FILE,
    Int8Network,
    add_int8_network,
    load_exported_network,
    read_model_info,
)

LOG = logging.getLogger(__name__)

FIDELITY_GOAL = 0.95
REFERENCE_SCORE = 0.5
CALIBRATION_IMAGES = 32
ALWAYS_FLOAT32 = ("flatten", "concat")  # name parts; GluonCV's INT8 SSD script excludes these
HEAD_MARK = "convpredictor"  # GluonCV's class and box prediction convolutions


def float32_candidates(symbol_file: Path) -> list[tuple[str, ...]]:
    """Sets of convolutions to keep in float32, tried in order: none, the first convolution
    (it sees raw pixels), the first convolution and the prediction heads (each set once: a
    network without heads has fewer)."""
    nodes = json.loads(symbol_file.read_text(encoding="utf-8"))["nodes"]
    convolutions = [node["name"] for node in nodes if node["op"] == "Convolution"]
    first = tuple(convolutions[:1])
    heads = tuple(name for name in convolutions if HEAD_MARK in name)
    return list(dict.fromkeys([(), first, first + heads]))


def detections(net: gluon.HybridBlock, images: np.ndarray, batch_size: int = 8
               ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(class ids, scores, boxes in input pixels) of each image of `images` (N x 3 x S x S)."""
    found = []
    for start in range(0, len(images), batch_size):
        ids, scores, boxes = net(mx.nd.array(images[start:start + batch_size]))
        found += list(zip(ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()))
    return found


def agreement_map(reference: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  candidate: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  image_shape: int) -> float | None:
    """VOC07 mAP of `candidate`'s detections with `reference`'s scoring at least
    `REFERENCE_SCORE` as the ground truth, both clipped to the image as served (1.0 for a
    network against itself); None when the reference has no such detection."""
    metric = DetectionMAP()
    for (ref_ids, ref_scores, ref_boxes), (ids, scores, boxes) in zip(reference, candidate):
        truth = (np.ravel(ref_ids) >= 0) & (np.ravel(ref_scores) >= REFERENCE_SCORE)
        metric.add_image(np.clip(boxes, 0, image_shape), ids, scores,
                         np.clip(ref_boxes[truth], 0, image_shape), np.ravel(ref_ids)[truth])
    value = metric.result().voc07
    return None if math.isnan(value) else value


def quantized(model_dir: Path, images: np.ndarray, float32_layers: Sequence[str]
              ) -> gluon.SymbolBlock:
    """The exported network with its convolutions in INT8 but `float32_layers` (and the
    `ALWAYS_FLOAT32` layers), calibrated on `images`."""
    calibration = mx.io.NDArrayIter(data=images, batch_size=min(8, len(images)))
    return quantize_net_v2(load_exported_network(model_dir, mx.cpu()), quantized_dtype="auto",
                           exclude_layers=list(float32_layers),
                           exclude_layers_match=list(ALWAYS_FLOAT32), calib_data=calibration,
                           calib_mode="naive", num_calib_examples=len(images), ctx=mx.cpu())


def quantize_exported(model_dir: Path, images: np.ndarray, image_shape: int
                      ) -> tuple[gluon.SymbolBlock, tuple[str, ...], float | None]:
    """The INT8 network of the artifact in `model_dir`, the layers it keeps in float32 and its
    measured agreement with the float32 network on `images` (N x 3 x S x S, as the network
    takes them). Without anything confident to compare with (an untrained network), the
    safest candidate is kept."""
    candidates = float32_candidates(model_dir / SYMBOL_FILE)
    reference = detections(load_exported_network(model_dir, mx.cpu()), images)
    if agreement_map(reference, reference, image_shape) is None:
        LOG.warning("the float32 network detects nothing scoring %.2f or more in the %d "
                    "calibration images, so INT8 fidelity cannot be measured; keeping the first "
                    "convolution and the heads in float32", REFERENCE_SCORE, len(images))
        return quantized(model_dir, images, candidates[-1]), candidates[-1], None
    best: tuple[gluon.SymbolBlock, tuple[str, ...], float] | None = None
    for layers in candidates:
        net = quantized(model_dir, images, layers)
        fidelity = agreement_map(reference, detections(net, images), image_shape) or 0.0
        LOG.info("INT8 with %d convolutions in float32: mAP %.4f against float32 on %d images "
                 "(goal %.2f)", len(layers), fidelity, len(images), FIDELITY_GOAL)
        if best is None or fidelity > best[2]:
            best = (net, layers, fidelity)
        if fidelity >= FIDELITY_GOAL:
            break
    assert best is not None
    if best[2] < FIDELITY_GOAL:
        LOG.warning("no INT8 candidate reached mAP %.2f against float32; keeping the best "
                    "(%.4f, %d convolutions in float32)", FIDELITY_GOAL, best[2], len(best[1]))
    return best


def write_int8_network(model_dir: Path, images: np.ndarray) -> tuple[Int8Network, list[Path]]:
    """Quantize the artifact's network, calibrated on `images` (N x 3 x S x S), and add the INT8
    network to the artifact: its `model_info.json` entry and the files written."""
    info = read_model_info(model_dir)
    net, float32_layers, fidelity = quantize_exported(model_dir, images, info.image_shape)
    entry = Int8Network(INT8_SYMBOL_FILE, INT8_PARAMS_FILE, float32_layers, len(images),
                        fidelity)
    return entry, add_int8_network(net, model_dir, replace(info, int8=entry))
