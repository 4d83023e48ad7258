"""What the network will see of the objects, before paying for training: the sizes of the boxes
after the whole image is resized to `image_shape` (as training and serving resize it), against
the smallest anchor of the chosen network (given by the caller: the network's anchors live
above the data code), and the object count per class.

A box far below the smallest anchor overlaps no anchor by the matching IoU, so the network
hardly learns it and never finds it; resized from a large photo, a 25-px object becomes 2 px.
The warning says so with the ways out: a larger `image_shape`, or tiled inference
(docs/tiling.md) on crops of a similar scale.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ssd_sagemaker.data.checks.samples import Sample

LOG = logging.getLogger(__name__)

# Box side (square root of the area, in network pixels) bins of the distribution.
SIZE_BINS = (8, 16, 32, 64, 128)
# Anchors are matched at IoU 0.5: a square box below anchor / sqrt(2) cannot reach it.
MATCH_IOU = 0.5
LARGEST_IMAGE_SHAPE = 512  # the largest anchor preset (model/backbones.py)


@dataclass(frozen=True)
class NetworkInput:
    """What the network sees of an image: `image_shape` pixels square, and `smallest_anchor`
    (network pixels) the side of `base_network`'s smallest anchor at that size."""

    base_network: str
    image_shape: int
    smallest_anchor: float


def box_sides(samples: Sequence[Sample], image_shape: int) -> np.ndarray:
    """sqrt(width * height) of every box once its image is resized to image_shape squared."""
    boxes = [sample.boxes.reshape(-1, 4) for sample in samples]
    every = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    sides = (every[:, 2:] - every[:, :2]) * image_shape
    return np.sqrt(np.clip(sides[:, 0], 0, None) * np.clip(sides[:, 1], 0, None))


def _percent(chosen: np.ndarray) -> float:
    return 100.0 * np.count_nonzero(chosen) / max(len(chosen), 1)


def _bin_name(low: float, high: float) -> str:
    if low == 0:
        return f"<{high:g}"
    return f">={low:g}" if high == math.inf else f"{low:g}-{high:g}"


def object_lines(samples: Sequence[Sample], class_names: Mapping[int, str],
                 network: NetworkInput | None = None) -> tuple[list[str], list[str]]:
    """(lines, warnings): the count per class, and with `network` the size distribution
    after resizing and a warning when boxes are below what anchors match."""
    counts = Counter(int(c) for sample in samples for c in sample.class_ids)
    if not counts:
        return [], []
    named = ", ".join(f"{class_names.get(c, c)} {n}" for c, n in sorted(counts.items()))
    ratio = max(counts.values()) / min(counts.values())
    lines = [f"per class: {named}" + (f" (the most common {ratio:.0f}x the least)"
                                               if ratio >= 2 else "")]
    if network is None:
        return lines, []
    image_shape, anchor = network.image_shape, network.smallest_anchor
    sides = box_sides(samples, image_shape)
    edges = (0, *SIZE_BINS, math.inf)
    shares = [f"{_bin_name(low, high)} {_percent((sides >= low) & (sides < high)):.0f}%"
              for low, high in zip(edges, edges[1:])]
    floor = anchor * math.sqrt(MATCH_IOU)
    lines.append(f"sizes after resizing to {image_shape} px (sqrt(w*h), px): "
                 f"{', '.join(shares)}; median {float(np.median(sides)):.0f} px; the smallest "
                 f"anchor of {network.base_network} at {image_shape} is {anchor:.0f} px")
    small = _percent(sides < floor)
    if not small:
        return lines, []
    larger = (f"train at {LARGEST_IMAGE_SHAPE} or " if image_shape < LARGEST_IMAGE_SHAPE
              else "")
    return lines, [f"{small:.0f}% of boxes are smaller than {floor:.0f} px after "
                   f"resizing to {image_shape} (no anchor of {anchor:.0f} px overlaps them by "
                   f"IoU {MATCH_IOU:g}, so the network hardly learns them): {larger}tile "
                   f"(train on crops, serve with tile=SIZE; docs/tiling.md)"]


def log_objects(samples: Sequence[Sample], class_names: Mapping[int, str],
                network: NetworkInput, channel: str) -> None:
    """Training's start-up lines of `object_lines`, the warning as a warning."""
    lines, warnings = object_lines(samples, class_names, network)
    for line in lines:
        LOG.info("%s objects: %s", channel, line)
    for line in warnings:
        LOG.warning("%s: %s", channel, line)
