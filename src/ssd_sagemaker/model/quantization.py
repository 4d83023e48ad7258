"""The INT8 network, made at training time from the exported float32 one (`quantize=int8`).

MXNet's `quantize_net_v2` (oneDNN) quantizes every convolution it can and calibrates the
ranges of their outputs ("naive": the min/max seen on sample images, as GluonCV's INT8 SSD
script does; "entropy" calibration left a fitted ResNet-50 SSD with no detection at all, and
channel-wise granularity changed nothing, measured). GluonCV's script keeps the heads'
`flatten` and `concat` layers in float32; which convolutions must stay float32 too is measured
on each model: the candidates below are tried in turn, and the first that meets both fidelity
goals on the calibration images is kept —

- its detections agree with the float32 network's (VOC07 mAP, float32 detections scoring at
  least `REFERENCE_SCORE` taken as ground truth) to `FIDELITY_GOAL`, and
- its mAP against the calibration images' labels is within `LABELS_MAP_MARGIN` of float32's
  (the agreement alone only scores the confident detections; the lower-scoring ones, which
  the labels' mAP also ranks, moved more).

Without a candidate meeting both, the one closest to them is kept and the entry says so
(`auto` serves float32 then). The float32 network is not changed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
LABELS_MAP_MARGIN = 0.01
REFERENCE_SCORE = 0.5
CALIBRATION_IMAGES = 32
ALWAYS_FLOAT32 = ("flatten", "concat")  # name parts; GluonCV's INT8 SSD script excludes these
HEAD_MARK = "convpredictor"  # GluonCV's class and box prediction convolutions


def float32_candidates(symbol_file: Path) -> list[tuple[str, ...]]:
    """Sets of convolutions to keep in float32, tried in order: none, the class and box
    prediction heads, the heads and the first convolution (it sees raw pixels). On the demo's
    ResNet-50 SSD300 (held-out mAP 0.66 in float32), all-INT8 scored 0.32, the first
    convolution alone in float32 0.34, the class or box heads alone 0.53 or 0.51, all heads 0.67
    (bench/README.md). Each set once: a network without heads has fewer."""
    nodes = json.loads(symbol_file.read_text(encoding="utf-8"))["nodes"]
    convolutions = [node["name"] for node in nodes if node["op"] == "Convolution"]
    heads = tuple(name for name in convolutions if HEAD_MARK in name)
    return list(dict.fromkeys([(), heads, tuple(convolutions[:1]) + heads]))


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


def map_against_labels(found: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       labels: Sequence[np.ndarray]) -> float:
    """VOC07 mAP of detections against each image's label rows [x1, y1, x2, y2, class,
    (difficult)] in input pixels (rows with class < 0 are padding)."""
    metric = DetectionMAP()
    for (ids, scores, boxes), label in zip(found, labels):
        metric.add_image(boxes, ids, scores, label[:, :4], label[:, 4],
                         label[:, 5] if label.shape[1] > 5 else None)
    return metric.result().voc07


@dataclass(frozen=True)
class Fidelity:
    """How an INT8 network's detections compare on the calibration images: `agreement` with
    the float32 network's (None: float32 detected nothing confident), and the mAP of each
    against the labels (None without labels)."""

    agreement: float | None
    labels_map: float | None = None
    float32_labels_map: float | None = None

    def shortfall(self) -> float:
        """How far the worse of the two goals is missed (0 when both are met)."""
        gaps = [FIDELITY_GOAL - (self.agreement or 0.0)]
        if self.labels_map is not None and self.float32_labels_map is not None:
            gaps.append(self.float32_labels_map - LABELS_MAP_MARGIN - self.labels_map)
        return max(0.0, *gaps)


def meets_fidelity_goals(entry: Int8Network) -> bool:
    """Whether the INT8 network's recorded fidelity met both goals (entries written before the
    labels were measured never do)."""
    fidelity = Fidelity(entry.fidelity_map, entry.labels_map, entry.float32_labels_map)
    return entry.fidelity_map is not None and entry.labels_map is not None \
        and fidelity.shortfall() == 0.0


def quantized(model_dir: Path, images: np.ndarray, float32_layers: Sequence[str]
              ) -> gluon.SymbolBlock:
    """The exported network with its convolutions in INT8 but `float32_layers` (and the
    `ALWAYS_FLOAT32` layers), calibrated on `images`."""
    calibration = mx.io.NDArrayIter(data=images, batch_size=min(8, len(images)))
    return quantize_net_v2(load_exported_network(model_dir, mx.cpu()), quantized_dtype="auto",
                           exclude_layers=list(float32_layers),
                           exclude_layers_match=list(ALWAYS_FLOAT32), calib_data=calibration,
                           calib_mode="naive", num_calib_examples=len(images), ctx=mx.cpu())


def quantize_exported(model_dir: Path, images: np.ndarray, image_shape: int,
                      labels: Sequence[np.ndarray] | None = None
                      ) -> tuple[gluon.SymbolBlock, tuple[str, ...], Fidelity]:
    """The INT8 network of the artifact in `model_dir`, the layers it keeps in float32 and its
    measured fidelity on `images` (N x 3 x S x S, as the network takes them) and their `labels`
    (one array of rows per image, `map_against_labels`'s form). Without anything confident to
    compare with (an untrained network), the safest candidate is kept."""
    candidates = float32_candidates(model_dir / SYMBOL_FILE)
    reference = detections(load_exported_network(model_dir, mx.cpu()), images)
    if agreement_map(reference, reference, image_shape) is None:
        LOG.warning("the float32 network detects nothing scoring %.2f or more in the %d "
                    "calibration images, so INT8 fidelity cannot be measured; keeping the first "
                    "convolution and the heads in float32", REFERENCE_SCORE, len(images))
        return quantized(model_dir, images, candidates[-1]), candidates[-1], Fidelity(None)
    float32_labels = None if labels is None else map_against_labels(reference, labels)
    best: tuple[gluon.SymbolBlock, tuple[str, ...], Fidelity] | None = None
    for layers in candidates:
        net = quantized(model_dir, images, layers)
        found = detections(net, images)
        fidelity = Fidelity(agreement_map(reference, found, image_shape) or 0.0,
                            None if labels is None else map_against_labels(found, labels),
                            float32_labels)
        LOG.info("INT8 with %d convolutions in float32 on %d images: mAP %.4f against float32 "
                 "(goal %.2f), against the labels %s (float32 %s, goal within %.2f)",
                 len(layers), len(images), fidelity.agreement, FIDELITY_GOAL,
                 measured(fidelity.labels_map), measured(float32_labels), LABELS_MAP_MARGIN)
        if best is None or fidelity.shortfall() < best[2].shortfall():
            best = (net, layers, fidelity)
        if fidelity.shortfall() == 0.0:
            break
    assert best is not None
    if best[2].shortfall() > 0.0:
        LOG.warning("no INT8 candidate met the fidelity goals; keeping the closest (%d "
                    "convolutions in float32, short by %.4f); SSD_INFERENCE_PRECISION=auto "
                    "serves float32 with it", len(best[1]), best[2].shortfall())
    return best


def measured(value: float | None) -> str:
    """A recorded fidelity figure for a log line."""
    return "not measured" if value is None else f"{value:.4f}"


def write_int8_network(model_dir: Path, images: np.ndarray,
                       labels: Sequence[np.ndarray] | None = None,
                       float32_layers: Sequence[str] | None = None
                       ) -> tuple[Int8Network, list[Path]]:
    """Quantize the artifact's network, calibrated on `images` (N x 3 x S x S) and checked
    against their `labels` when given, and add the INT8 network to the artifact: its
    `model_info.json` entry and the files written. `float32_layers` fixes the layers kept in
    float32 instead of measuring (benchmarks of untrained networks; fidelity not recorded)."""
    info = read_model_info(model_dir)
    if float32_layers is None:
        net, kept, fidelity = quantize_exported(model_dir, images, info.image_shape, labels)
    else:
        kept, fidelity = tuple(float32_layers), Fidelity(None)
        net = quantized(model_dir, images, kept)
    entry = Int8Network(INT8_SYMBOL_FILE, INT8_PARAMS_FILE, kept, len(images),
                        fidelity.agreement, fidelity.labels_map, fidelity.float32_labels_map)
    return entry, add_int8_network(net, model_dir, replace(info, int8=entry))
