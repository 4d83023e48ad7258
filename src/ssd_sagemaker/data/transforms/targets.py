"""SSD training targets in NumPy: GluonCV's `SSDTargetGenerator` as `SSDDefaultTrainTransform`
uses it (bipartite matching, ties to a ground truth's best IoU shared, then every anchor with
IoU >= 0.5; class targets id + 1 with 0 for background; box targets centre-offset encoded and
divided by (0.1, 0.1, 0.2, 0.2)). Runs in loader workers without MXNet, and accepts images with
no objects (GluonCV's generator fails on them: all anchors are then background).

The box targets are bit-identical to GluonCV's, not just close: same float32 operations in the
same order (anchors through corner form and back, as the generator takes them) and the C
library's `logf`, which MXNet's `log` calls (NumPy's float32 log differs in the last bit for
~8 % of values). A from-scratch run is chaotic: a 1e-6 difference in a target is enough to
send it elsewhere, so only exact targets let a benchmark compare this loop with GluonCV's.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

BOX_NORM = (0.1, 0.1, 0.2, 0.2)
IOU_THRESHOLD = 0.5
# Bipartite matching ignores pairs whose IoU is not above this (GluonCV's threshold).
MATCH_FLOOR = 1e-12
EPS = 1e-12


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every corner box in `a` (A, 4) with every one in `b` (B, 4), as (A, B)."""
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def match_anchors(ious: np.ndarray) -> np.ndarray:
    """For each anchor (row), the index of its ground truth (column), or -1."""
    num_anchors, num_gt = ious.shape
    match = np.full(num_anchors, -1, dtype=np.int64)
    # Bipartite: repeatedly the best remaining (anchor, ground truth) pair.
    remaining = ious.astype(np.float64).copy()
    for _ in range(min(num_anchors, num_gt)):
        flat = int(np.argmax(remaining))
        row, col = divmod(flat, num_gt)
        if remaining[row, col] <= MATCH_FLOOR:
            break
        match[row] = col
        remaining[row, :] = -1
        remaining[:, col] = -1
    # An unmatched anchor whose best ground truth has its maximum IoU there matches it too.
    best_gt = ious.argmax(axis=1)
    best_iou = ious[np.arange(num_anchors), best_gt]
    column_max = ious.max(axis=0)
    ties = (match < 0) & (best_iou + EPS >= column_max[best_gt])
    match[ties] = best_gt[ties]
    # Every other anchor overlapping a ground truth enough.
    good = (match < 0) & (best_iou >= IOU_THRESHOLD)
    match[good] = best_gt[good]
    return match


_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_LIBM.logf.restype = ctypes.c_float
_LIBM.logf.argtypes = [ctypes.c_float]


def logf(values: np.ndarray) -> np.ndarray:
    """The natural log of float32 `values` as MXNet computes it (the C library's logf; a
    positive anchor or two per ground truth, so a Python loop is cheap)."""
    flat = [_LIBM.logf(float(value)) for value in values.ravel()]
    return np.asarray(flat, dtype=np.float32).reshape(values.shape)


def corner_to_centre(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centres (N, 2), sizes (N, 2)) of corner boxes, in GluonCV's `BBoxCornerToCenter` order."""
    sizes = corners[:, 2:] - corners[:, :2]
    return corners[:, :2] + sizes * np.float32(0.5), sizes


class SSDTargetEncoder:
    """Class and box targets of one image against fixed anchors (centre form, pixels)."""

    def __init__(self, anchors: np.ndarray):
        anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 4)
        half = anchors[:, 2:] * np.float32(0.5)
        self.corners = np.hstack([anchors[:, :2] - half, anchors[:, :2] + half])
        # The generator matches and encodes against the corners, converted back to centres.
        self.centres, self.sizes = corner_to_centre(self.corners)

    def __call__(self, boxes: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cls_targets (A,), box_targets (A, 4)) float32 for corner `boxes` (N, 4) in the
        anchors' pixel space."""
        num_anchors = len(self.centres)
        cls_targets = np.zeros(num_anchors, dtype=np.float32)
        box_targets = np.zeros((num_anchors, 4), dtype=np.float32)
        if len(boxes) == 0:
            return cls_targets, box_targets
        match = match_anchors(box_iou(self.corners, boxes))
        positive = match >= 0
        cls_targets[positive] = class_ids[match[positive]] + 1
        centre, size = corner_to_centre(np.asarray(boxes, dtype=np.float32)[match[positive]])
        anchor_centre, anchor_size = self.centres[positive], self.sizes[positive]
        norm = np.asarray(BOX_NORM, dtype=np.float32)
        box_targets[positive, :2] = (centre - anchor_centre) / anchor_size / norm[:2]
        box_targets[positive, 2:] = logf(size / anchor_size) / norm[2:]
        return cls_targets, box_targets
