"""COCO's figures (AP@[.5:.95], AP50, AP75, AP by object size, per-class AP) computed by
pycocotools itself on the two documents this module writes — `ground_truth.json` in COCO's
dataset format and `detections.json` in its results format — so anyone re-scoring those files
with pycocotools gets the same numbers.

Boxes are in the image's own pixels, `[x, y, width, height]` from the fractions times the
image size (COCO's continuous coordinates, not VOC's inclusive pixel ends). Category ids are
the model's class ids (0 first), as the endpoint answers them. Difficult boxes are plain
ground truth here (COCO has no such flag)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssd_sagemaker.evaluate.images import EvaluatedImage

LOG = logging.getLogger(__name__)

# pycocotools' `stats` after summarize(), in its order, under the names evaluation.json uses.
STAT_NAMES = ("coco_map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


@dataclass(frozen=True)
class CocoScores:
    """COCO's summary figures (None where pycocotools reports -1: no ground truth of that
    kind) and each class's AP@[.5:.95] (None for a class without ground truth)."""

    stats: dict[str, float | None]
    per_class: dict[int, float | None]


def _box(box: np.ndarray, image: EvaluatedImage) -> list[float]:
    x1, y1 = float(box[0]) * image.width, float(box[1]) * image.height
    x2, y2 = float(box[2]) * image.width, float(box[3]) * image.height
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_document(images: Sequence[EvaluatedImage], classes: Sequence[str]) -> dict:
    """COCO's dataset format: images (ids from 1), annotations, categories."""
    annotations: list[dict] = []
    for image_id, image in enumerate(images, start=1):
        for box, class_id in zip(image.truth_boxes, image.truth_ids):
            bbox = _box(box, image)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(class_id), "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
    return {"images": [{"id": image_id, "file_name": image.name, "width": image.width,
                        "height": image.height} for image_id, image in enumerate(images, 1)],
            "annotations": annotations,
            "categories": [{"id": class_id, "name": name} for class_id, name in
                           enumerate(classes)]}


def detections_document(images: Sequence[EvaluatedImage]) -> list[dict]:
    """COCO's results format: one `{image_id, category_id, bbox, score}` per detection."""
    return [{"image_id": image_id, "category_id": int(row[0]), "bbox": _box(row[2:], image),
             "score": float(row[1])}
            for image_id, image in enumerate(images, start=1) for row in image.detections]


def _figure(value: float) -> float | None:
    return None if value < 0 else float(value)


def coco_scores(truth: dict, detections: list[dict]) -> CocoScores:
    """pycocotools' COCOeval (bbox) of `detections` against `truth` (its printout goes to the
    debug log). No detection at all: every figure with ground truth is 0 (pycocotools cannot
    load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class_ids = [category["id"] for category in truth["categories"]]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ground = COCO()
        ground.dataset = copy.deepcopy(truth)
        ground.createIndex()
        if not detections:
            return _without_detections(truth, class_ids)
        evaluation = COCOeval(ground, ground.loadRes(copy.deepcopy(detections)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    LOG.debug("pycocotools:\n%s", printed.getvalue())
    precision = evaluation.eval["precision"]  # [IoU, recall, class, area, max detections]
    per_class: dict[int, float | None] = {}
    for index, class_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, index, 0, -1]
        values = values[values > -1]
        per_class[int(class_id)] = float(np.mean(values)) if values.size else None
    return CocoScores(dict(zip(STAT_NAMES, (_figure(v) for v in evaluation.stats[:6]))),
                      {class_id: per_class.get(class_id) for class_id in class_ids})


def _without_detections(truth: dict, class_ids: Sequence[int]) -> CocoScores:
    areas = [a["area"] for a in truth["annotations"]]
    present = {a["category_id"] for a in truth["annotations"]}
    ranges = {"coco_map": (0, np.inf), "ap50": (0, np.inf), "ap75": (0, np.inf),
              "ap_small": (0, 32 ** 2), "ap_medium": (32 ** 2, 96 ** 2),
              "ap_large": (96 ** 2, np.inf)}
    stats: dict[str, Any] = {name: 0.0 if any(low <= a <= high for a in areas) else None
                             for name, (low, high) in ranges.items()}
    return CocoScores(stats, {c: 0.0 if c in present else None for c in class_ids})
