"""A stand-in detector for tiling tests: it finds solid shapes by their pixels (connected
components of pure red or green), so what each tile sees, and hence what a seam cuts, is
computed, not assumed; and a canvas to draw such shapes on."""

from __future__ import annotations

import time

import cv2
import numpy as np

from serving_samples import CLASSES
from ssd_sagemaker.model.artifact import ModelInfo

GREY = 128


class ShapeFinder:
    """A detector of solid red (class 0) and green (class 1) shapes, one box per connected
    region, as the network's rows (fractions of the image it is given); counts its batches."""

    info = ModelInfo(CLASSES, 300, "vgg-16", 0.45)

    def __init__(self, seconds_per_batch: float = 0.0):
        self.batches: list[int] = []
        self.seconds_per_batch = seconds_per_batch

    def detect(self, image):
        return self.detect_batch([image])[0]

    def detect_batch(self, images):
        self.batches.append(len(images))
        time.sleep(self.seconds_per_batch)
        return [self._find(image) for image in images]

    def _find(self, image):
        height, width = image.shape[:2]
        rows = []
        for class_id, channel in ((0, 0), (1, 1)):
            mask = ((image[..., channel] > 200) & (image.max(axis=2) == image[..., channel]))
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
            for left, top, w, h, _area in stats[1:count]:
                rows.append([float(class_id), 0.9, left / width, top / height,
                             (left + w) / width, (top + h) / height])
        return rows


def canvas(width: int, height: int, shapes) -> np.ndarray:
    """A grey RGB image with filled squares (class, left, top, side)."""
    image = np.full((height, width, 3), GREY, np.uint8)
    for class_id, left, top, side in shapes:
        image[top:top + side, left:left + side] = (255, 0, 0) if class_id == 0 else (0, 255, 0)
    return image
