"""Pascal VOC detection mAP, computed here rather than by GluonCV's metric classes, in its two
variants:

- **VOC07 11-point** (`voc07`): each class's AP is the mean, over the recall points 0, 0.1, …, 1,
  of the best precision reached at that recall or beyond. This is what `validation:mAP` reports
  (what SageMaker's built-in Object Detection algorithm and GluonCV's `VOC07MApMetric` report),
  so tuning jobs and early stopping compare like with like.
- **area** (`area`, VOC2010+ "all-point"): the area under the precision envelope; it rewards
  every recall step, not just those crossing a tenth. Written to `metrics.jsonl` as
  `validation_map_area`.

Conventions (the VOC devkit's and GluonCV's `VOCMApMetric`; `tests/unit/test_evaluation.py`
holds this module to GluonCV's numbers to 1e-6, and to pycocotools' AP at IoU 0.5):

- boxes are (xmin, ymin, xmax, ymax) in pixels with inclusive ends: a box spans
  xmax - xmin + 1 pixels, so IoUs are those of the integer VOC boxes;
- rows whose class id is < 0 are padding (the loader pads labels, NMS pads detections) and are
  ignored;
- per image and class, detections are taken best score first; each is matched to the ground
  truth box it overlaps most. IoU below the threshold: a false positive. A *difficult* box:
  neither a hit nor a miss (the detection is ignored, and the box is not counted among the
  positives). Otherwise a true positive if that box was not taken yet, else a false positive
  (a duplicate);
- detections are ranked by score over the whole set, ties broken as GluonCV breaks them (the
  reverse of NumPy's default argsort of the scores in arrival order);
- a class without (non-difficult) ground truth has no AP and is left out of the mean; a class
  with ground truth but no detection has AP 0; with no AP at all the mAP is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# GluonCV's and the VOC devkit Python port's `np.arange(0., 1.1, 0.1)`: the same floats (0.3 is
# 0.30000000000000004 here), so a recall of exactly 3/10 reaches the same points as theirs.
VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


@dataclass(frozen=True)
class PrecisionRecall:
    """One class's cumulative precision and recall, detections ranked best score first.
    `precision` is NaN where only ignored detections were seen so far."""

    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class MeanAveragePrecision:
    """Both mAP variants and the per-class APs behind them (classes without ground truth are
    absent)."""

    voc07: float
    area: float
    per_class_voc07: dict[int, float]
    per_class_area: dict[int, float]


def interpolated_average_precision(curve: PrecisionRecall, recall_points: np.ndarray) -> float:
    """Mean over `recall_points` of the best precision at recall >= the point (0 where the
    recall never gets there). VOC07 uses 11 points; COCO's AP uses 101 the same way."""
    precision = np.nan_to_num(curve.precision)
    best = [precision[curve.recall >= point].max() if np.any(curve.recall >= point) else 0.0
            for point in recall_points]
    return float(np.mean(best))


def area_average_precision(curve: PrecisionRecall) -> float:
    """Area under the precision envelope (precision made non-increasing in recall), with the
    curve closed at recall 0 and at recall 1 with precision 0."""
    recall = np.concatenate(([0.0], curve.recall, [1.0]))
    precision = np.concatenate(([0.0], np.nan_to_num(curve.precision), [0.0]))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _numpy(array: Any) -> np.ndarray | None:
    if array is None:
        return None
    return array.asnumpy() if hasattr(array, "asnumpy") else np.asarray(array)


def _array(array: Any) -> np.ndarray:
    """An argument that must be given (only `gt_difficult` may be None), as a numpy array."""
    if array is None:
        raise ValueError("update() got None for an array it needs (only gt_difficult may be None)")
    return array.asnumpy() if hasattr(array, "asnumpy") else np.asarray(array)


def _parts(value: Any, count: int | None = None) -> list:
    """A per-device list (as `validate` collects them) or one batch array, as a list."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] * count if value is None and count is not None else [value]


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every pair of inclusive-end pixel boxes (N x 4 against M x 4 → N x M)."""
    boxes, others = boxes.astype(np.float64), others.astype(np.float64)
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:]) + 1
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2] + 1, axis=1)
    other_area = np.prod(others[:, 2:] - others[:, :2] + 1, axis=1)
    return intersection / (area[:, None] + other_area[None, :] - intersection)


class DetectionMAP:
    """Accumulates detections and ground truth batch by batch (`update`), then gives both mAP
    variants (`result`). `reset` before each validation pass."""

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        self._positives: dict[int, int] = {}
        self._scores: dict[int, list[np.ndarray]] = {}
        self._matches: dict[int, list[np.ndarray]] = {}

    def update(self, pred_boxes, pred_ids, pred_scores, gt_boxes, gt_ids,
               gt_difficult=None) -> None:
        """Add a batch: predictions B x N x 4 boxes, B x N (or B x N x 1) ids and scores;
        ground truth B x M x 4 boxes, B x M (x 1) ids and difficult flags (None: none is).
        Each argument may also be a list of such arrays, one per device."""
        parts = [_parts(pred_boxes), _parts(pred_ids), _parts(pred_scores), _parts(gt_boxes),
                 _parts(gt_ids)]
        parts.append(_parts(gt_difficult, len(parts[0])))
        if len({len(p) for p in parts}) != 1:
            raise ValueError(f"update() got {[len(p) for p in parts]} device parts; every "
                             f"argument needs one array per device")
        for device in zip(*parts):
            boxes, ids, scores, truth, truth_ids = (_array(a) for a in device[:5])
            difficult = _numpy(device[5])
            for image in range(boxes.shape[0]):
                self.add_image(boxes[image], ids[image], scores[image], truth[image],
                               truth_ids[image], None if difficult is None else difficult[image])

    def add_image(self, pred_boxes: np.ndarray, pred_ids: np.ndarray, pred_scores: np.ndarray,
                  gt_boxes: np.ndarray, gt_ids: np.ndarray,
                  gt_difficult: np.ndarray | None = None) -> None:
        """Add one image's detections and ground truth (padding rows, id < 0, allowed)."""
        pred_ids, pred_scores = np.ravel(pred_ids), np.ravel(pred_scores)
        gt_ids = np.ravel(gt_ids)
        gt_difficult = (np.zeros(len(gt_ids), bool) if gt_difficult is None
                        else np.ravel(gt_difficult).astype(bool))
        detected, present = pred_ids >= 0, gt_ids >= 0
        pred_boxes, pred_scores = np.reshape(pred_boxes, (-1, 4))[detected], pred_scores[detected]
        pred_ids = pred_ids[detected].astype(int)
        gt_boxes = np.reshape(gt_boxes, (-1, 4))[present]
        gt_difficult, gt_ids = gt_difficult[present], gt_ids[present].astype(int)
        for class_id in np.unique(np.concatenate((pred_ids, gt_ids))):
            class_id = int(class_id)
            mine = pred_ids == class_id
            order = pred_scores[mine].argsort()[::-1]
            truth = gt_ids == class_id
            self._positives[class_id] = (self._positives.get(class_id, 0)
                                         + int(np.count_nonzero(~gt_difficult[truth])))
            self._scores.setdefault(class_id, []).append(pred_scores[mine][order])
            self._matches.setdefault(class_id, []).append(
                self._match(pred_boxes[mine][order], gt_boxes[truth], gt_difficult[truth]))

    def _match(self, boxes: np.ndarray, truth: np.ndarray, difficult: np.ndarray) -> np.ndarray:
        """TRUE_POSITIVE, FALSE_POSITIVE or IGNORED for each detection, best score first."""
        matches = np.full(len(boxes), FALSE_POSITIVE, np.int8)
        if len(boxes) == 0 or len(truth) == 0:
            return matches
        iou = box_iou(boxes, truth)
        best = iou.argmax(axis=1)
        taken = np.zeros(len(truth), bool)
        for index, (box, overlap) in enumerate(zip(best, iou.max(axis=1))):
            if overlap < self.iou_threshold:
                continue
            if difficult[box]:
                matches[index] = IGNORED
            elif not taken[box]:
                matches[index] = TRUE_POSITIVE
            taken[box] = True
        return matches

    def curves(self) -> dict[int, PrecisionRecall]:
        """Precision/recall of each class that has (non-difficult) ground truth."""
        curves = {}
        for class_id, positives in sorted(self._positives.items()):
            if positives == 0:
                continue
            scores = np.concatenate(self._scores[class_id])
            matches = np.concatenate(self._matches[class_id])[scores.argsort()[::-1]]
            hits = np.cumsum(matches == TRUE_POSITIVE)
            misses = np.cumsum(matches == FALSE_POSITIVE)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = hits / (hits + misses)
            curves[class_id] = PrecisionRecall(precision, hits / positives)
        return curves

    def result(self) -> MeanAveragePrecision:
        curves = self.curves()
        voc07 = {c: interpolated_average_precision(curve, VOC07_RECALL_POINTS)
                 for c, curve in curves.items()}
        area = {c: area_average_precision(curve) for c, curve in curves.items()}
        return MeanAveragePrecision(_mean(voc07.values()), _mean(area.values()), voc07, area)


def _mean(values: Sequence[float] | Any) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
