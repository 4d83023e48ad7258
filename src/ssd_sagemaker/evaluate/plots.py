"""The evaluation's pictures: precision-recall curves (one per class, AP in the legend), the
confusion matrix, and validation images with their ground truth and the model's detections
side by side."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssd_sagemaker.evaluate.confusion import CONFUSION_IOU, CONFUSION_SCORE
from ssd_sagemaker.evaluate.images import EvaluatedImage
from ssd_sagemaker.evaluate.scoring import Evaluation
from ssd_sagemaker.plotting import png_bytes, pyplot
from ssd_sagemaker.serving.rendering import draw_detections, encode_image


def pr_curves(evaluation: Evaluation) -> bytes:
    """Each class's precision envelope against recall (VOC matching at the job's IoU)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 6))
    for class_id, curve in evaluation.curves.items():
        precision = np.nan_to_num(curve.precision)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        row = evaluation.per_class[class_id] if class_id < len(evaluation.per_class) else None
        name = row.name if row else str(class_id)
        ap = row.ap_voc07 if row and row.ap_voc07 is not None else 0.0
        axes.step(np.concatenate(([0.0], curve.recall)), np.concatenate(([envelope[0] if len(
            envelope) else 0.0], envelope)), where="post", label=f"{name} (AP {ap:.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
             title=f"precision-recall, IoU {evaluation.iou_threshold:g}: VOC07 mAP "
                   f"{evaluation.voc07_map:.3f}")
    axes.grid(alpha=0.3)
    if evaluation.curves:
        axes.legend(loc="lower left")
    figure.tight_layout()
    return png_bytes(figure)


def confusion_plot(evaluation: Evaluation) -> bytes:
    """The confusion matrix with its counts, thresholds in the title."""
    plt = pyplot()
    labels = [*evaluation.classes, "background"]
    size = max(5.0, 0.7 * len(labels) + 3)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    counts = evaluation.confusion
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > counts.max() / 2 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true",
             title=f"confusion at IoU ≥ {CONFUSION_IOU:g}, score ≥ {CONFUSION_SCORE:g}")
    figure.tight_layout()
    return png_bytes(figure)


def _captioned(image: np.ndarray, caption: str) -> np.ndarray:
    strip = np.full((28, image.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, caption, (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.vstack([strip, image])


def side_by_side(image: EvaluatedImage, pixels: np.ndarray, classes: Sequence[str]) -> bytes:
    """A JPEG: the ground truth on the left, the detections scoring at least the confusion
    matrix's threshold on the right."""
    truth = [[c, 1.0, *box] for c, box in zip(image.truth_ids, image.truth_boxes)]
    shown = image.detections[image.detections[:, 1] >= CONFUSION_SCORE]
    left = _captioned(draw_detections(pixels, truth, classes), "ground truth")
    right = _captioned(draw_detections(pixels, shown.tolist(), classes),
                       f"predictions (score >= {CONFUSION_SCORE:g})")
    gap = np.full((left.shape[0], 8, 3), 255, dtype=np.uint8)
    return encode_image(np.hstack([left, gap, right]), "jpeg")
