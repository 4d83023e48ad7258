"""Which class each object was taken for: a confusion matrix over the classes plus background,
at one IoU and one score threshold (both stated wherever the matrix is shown)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssd_sagemaker.evaluation import box_iou

CONFUSION_IOU = 0.5
CONFUSION_SCORE = 0.5


def confusion_matrix(scaled: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     num_classes: int, iou_threshold: float = CONFUSION_IOU,
                     score_threshold: float = CONFUSION_SCORE) -> np.ndarray:
    """Counts, rows the true class and columns the predicted one, index `num_classes` being
    background: per image `(truth boxes, truth ids, detection rows)` in one pixel frame, each
    detection scoring at least `score_threshold` (best first) takes the untaken object of any
    class it overlaps most with IoU >= `iou_threshold` (row: that object's class), else it is a
    false alarm (row background); an object no detection took is missed (column background)."""
    background = num_classes
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for truth_boxes, truth_ids, rows in scaled:
        rows = rows[rows[:, 1] >= score_threshold]
        taken = np.zeros(len(truth_boxes), dtype=bool)
        overlaps = (box_iou(rows[:, 2:6], truth_boxes) if len(rows) and len(truth_boxes)
                    else np.zeros((len(rows), len(truth_boxes))))
        for row, overlap in zip(rows, overlaps):
            predicted = min(int(row[0]), background)
            overlap = np.where(taken, -1.0, overlap)
            best = int(np.argmax(overlap)) if len(overlap) else -1
            if best >= 0 and overlap[best] >= iou_threshold:
                taken[best] = True
                counts[min(int(truth_ids[best]), background), predicted] += 1
            else:
                counts[background, predicted] += 1
        for class_id in truth_ids[~taken]:
            counts[min(int(class_id), background), background] += 1
    return counts
