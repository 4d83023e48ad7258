"""The image with its detections drawn (box, class name, score), encoded as JPEG or PNG: what a
person looks at to judge a model, from the HTTP endpoint (`Accept: image/jpeg`) or `predict`."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Distinct, saturated colours (RGB), one per class id, cycling for more classes.
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))
ENCODINGS = {"jpeg": ".jpg", "png": ".png"}


def class_name(classes: Sequence[str], class_id: float) -> str:
    """The model's name for a class id, or the id itself when the model has no such class."""
    index = int(class_id)
    return classes[index] if 0 <= index < len(classes) else str(index)


def draw_detections(image: np.ndarray, detections: Sequence[Sequence[float]],
                    classes: Sequence[str]) -> np.ndarray:
    """A copy of an HWC RGB uint8 image with each [class_id, score, xmin, ymin, xmax, ymax]
    (fractions) drawn as a box labelled 'name score'. Lines scale with the image size."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.4, min(height, width) / 800)
    for class_id, score, *box in detections:
        colour = PALETTE[int(class_id) % len(PALETTE)]
        x1, y1 = round(box[0] * (width - 1)), round(box[1] * (height - 1))
        x2, y2 = round(box[2] * (width - 1)), round(box[3] * (height - 1))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = f"{class_name(classes, class_id)} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                                                     thickness)
        top = max(0, y1 - text_h - baseline)
        cv2.rectangle(canvas, (x1, top), (x1 + text_w, top + text_h + baseline), colour, -1)
        cv2.putText(canvas, label, (x1, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    """HWC RGB uint8 → JPEG or PNG bytes."""
    ok, encoded = cv2.imencode(ENCODINGS[image_format], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 HWC image
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {image_format}")
    return encoded.tobytes()
