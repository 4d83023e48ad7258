"""The evaluation's files — `evaluation.json`, `per_class.csv`, COCO's `ground_truth.json` and
`detections.json` — and the per-class table printed on the terminal."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict

from ssd_sagemaker.evaluate.confusion import CONFUSION_IOU, CONFUSION_SCORE
from ssd_sagemaker.evaluate.scoring import Evaluation

PER_CLASS_FIELDS = ("name", "ground_truths", "detections", "ap_voc07", "ap_area", "ap50_95")


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def summary(evaluation: Evaluation, source: dict) -> dict:
    """`evaluation.json`: the headline figures, the per-class list, the confusion matrix and
    `source` (what was scored: model or predictions folder, channel)."""
    return {
        **source,
        "images": evaluation.images,
        "iou_threshold": evaluation.iou_threshold,
        "voc07_map": _number(evaluation.voc07_map),
        "area_map": _number(evaluation.area_map),
        **evaluation.coco.stats,
        "per_class": [asdict(row) for row in evaluation.per_class],
        "confusion_matrix": {
            "iou_threshold": CONFUSION_IOU, "score_threshold": CONFUSION_SCORE,
            "labels": [*evaluation.classes, "background"],
            "rows_true_columns_predicted": evaluation.confusion.tolist()},
    }


def per_class_csv(evaluation: Evaluation) -> str:
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=PER_CLASS_FIELDS)
    writer.writeheader()
    writer.writerows(asdict(row) for row in evaluation.per_class)
    return table.getvalue()


def report_files(evaluation: Evaluation, source: dict) -> dict[str, bytes]:
    """The report's text files by name."""
    return {
        "evaluation.json": json.dumps(summary(evaluation, source), indent=2).encode(),
        "per_class.csv": per_class_csv(evaluation).encode(),
        "ground_truth.json": json.dumps(evaluation.ground_truth).encode(),
        "detections.json": json.dumps(evaluation.detections).encode(),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def table(evaluation: Evaluation) -> str:
    """The per-class table with the means under it (`-`: no ground truth of that class)."""
    width = max([len("class"), len("mean")] + [len(row.name) for row in evaluation.per_class])
    header = (f"{'class':<{width}}  {'objects':>7}  {'detections':>10}  {'AP VOC07':>8}  "
              f"{'AP area':>8}  {'AP@[.5:.95]':>11}")
    lines = [header, "-" * len(header)]
    for row in evaluation.per_class:
        lines.append(f"{row.name:<{width}}  {row.ground_truths:>7}  {row.detections:>10}  "
                     f"{_cell(row.ap_voc07):>8}  {_cell(row.ap_area):>8}  "
                     f"{_cell(row.ap50_95):>11}")
    lines.append("-" * len(header))
    lines.append(f"{'mean':<{width}}  {sum(r.ground_truths for r in evaluation.per_class):>7}  "
                 f"{sum(r.detections for r in evaluation.per_class):>10}  "
                 f"{_cell(evaluation.voc07_map):>8}  {_cell(evaluation.area_map):>8}  "
                 f"{_cell(evaluation.coco.stats.get('coco_map')):>11}")
    stats = evaluation.coco.stats
    lines.append(f"COCO: AP50 {_cell(stats.get('ap50'))}, AP75 {_cell(stats.get('ap75'))}, "
                 f"small {_cell(stats.get('ap_small'))}, medium {_cell(stats.get('ap_medium'))}, "
                 f"large {_cell(stats.get('ap_large'))} ({evaluation.images} images, VOC IoU "
                 f"{evaluation.iou_threshold:g})")
    return "\n".join(lines)
