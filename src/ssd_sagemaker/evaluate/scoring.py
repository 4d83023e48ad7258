"""An evaluation's numbers: VOC07 11-point and area mAP by `evaluation.DetectionMAP` exactly as
training's validation computes them (boxes in the network's S x S pixel frame, IoU at the job's
`overlap_threshold`), COCO's by pycocotools (`coco.py`), the per-class table and the confusion
matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssd_sagemaker.evaluate.coco import (
    CocoScores,
    coco_scores,
    detections_document,
    ground_truth_document,
)
from ssd_sagemaker.evaluate.confusion import CONFUSION_IOU, CONFUSION_SCORE, confusion_matrix
from ssd_sagemaker.evaluate.images import EvaluatedImage
from ssd_sagemaker.evaluation import DetectionMAP, PrecisionRecall


@dataclass(frozen=True)
class ClassScore:
    """One row of the per-class table (APs None for a class without ground truth)."""

    name: str
    ground_truths: int
    detections: int
    ap_voc07: float | None
    ap_area: float | None
    ap50_95: float | None


@dataclass(frozen=True)
class Evaluation:
    """Everything the report files and plots are made of."""

    classes: tuple[str, ...]
    images: int
    iou_threshold: float
    voc07_map: float
    area_map: float
    coco: CocoScores
    per_class: list[ClassScore]
    curves: dict[int, PrecisionRecall]
    confusion: np.ndarray
    ground_truth: dict  # COCO's dataset format
    detections: list[dict]  # COCO's results format


def in_frame(image: EvaluatedImage, frame: int | None) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """(truth boxes, truth ids, detection rows) in pixels of an S x S frame (the network's
    input, as validation scores), or of the image itself when `frame` is None."""
    width, height = (frame, frame) if frame else (image.width, image.height)
    scale = np.array([width, height, width, height], dtype=np.float64)
    rows = image.detections.copy()
    rows[:, 2:6] *= scale
    return image.truth_boxes * scale, image.truth_ids, rows


def voc_metric(images: Sequence[EvaluatedImage], frame: int | None,
               iou_threshold: float) -> DetectionMAP:
    metric = DetectionMAP(iou_threshold=iou_threshold)
    for image in images:
        truth, ids, rows = in_frame(image, frame)
        metric.add_image(rows[:, 2:6], rows[:, 0], rows[:, 1], truth, ids, image.difficult)
    return metric


def score(images: Sequence[EvaluatedImage], classes: Sequence[str], frame: int | None,
          iou_threshold: float) -> Evaluation:
    """Score `images` for `classes` (index = class id)."""
    metric = voc_metric(images, frame, iou_threshold)
    maps = metric.result()
    truth, detections = ground_truth_document(images, classes), detections_document(images)
    coco = coco_scores(truth, detections)
    truth_counts = np.bincount(np.concatenate([i.truth_ids for i in images] + [[]]).astype(int),
                               minlength=len(classes))
    detection_counts = np.bincount(
        np.concatenate([i.detections[:, 0] for i in images] + [[]]).astype(int),
        minlength=len(classes))
    per_class = [ClassScore(name, int(truth_counts[c]), int(detection_counts[c]),
                            maps.per_class_voc07.get(c), maps.per_class_area.get(c),
                            coco.per_class.get(c)) for c, name in enumerate(classes)]
    confusion = confusion_matrix([in_frame(i, frame) for i in images], len(classes),
                                 CONFUSION_IOU, CONFUSION_SCORE)
    return Evaluation(tuple(classes), len(images), iou_threshold, maps.voc07, maps.area, coco,
                      per_class, metric.curves(), confusion, truth, detections)
