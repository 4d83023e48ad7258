"""Sample inputs for the serving tests: image bytes, a stub predictor with known detections and
a real exported (untrained) SSD. The fixtures that hand them out (`model_dir`, `stub`) live in
tests/unit/serving/conftest.py."""

import cv2
import numpy as np

from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
from ssd_sagemaker.model.network import build_network

CLASSES = ("circle", "square")


def encode(image: np.ndarray, suffix: str = ".jpg", params=()) -> bytes:
    return cv2.imencode(suffix, image, list(params))[1].tobytes()


def noise(width=320, height=240, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


class StubPredictor:
    """Known detections (deliberately unsorted), so responses can be checked number by number."""

    info = ModelInfo(CLASSES, 300, "vgg-16", 0.45)
    rows = [[1.0, 0.5, 0.5, 0.5, 1.0, 1.0],
            [0.0, 0.9, 0.1, 0.2, 0.3, 0.6],
            [1.0, 0.05, 0.0, 0.0, 0.25, 0.25]]

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return [list(row) for row in self.rows]


def export_untrained_model(directory):
    """An untrained VGG-16 SSD300 with two classes, exported as `train` would."""
    net = build_network("vgg-16", 300, list(CLASSES))
    net.set_nms(0.45, 400, 100)
    save_artifact(net, directory, ModelInfo(CLASSES, 300, "vgg-16", 0.45), {"num_classes": 2})
    return directory
