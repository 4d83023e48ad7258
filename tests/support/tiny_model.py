"""A tiny exported detector with the SSD artifact's interface (three outputs: class ids, scores,
boxes in input pixels), so serving tests that need many forwards (the fuzz suite, the
1-worker leak test) run the real Predictor, app and server in milliseconds per request instead
of the seconds a VGG-16 SSD takes on these CPUs. The detections depend on the image's pixels."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.model.artifact import ModelInfo, save_artifact

CLASSES = ("circle", "square")


class TinyDetector(gluon.HybridBlock):
    """Pool the image, map it to `detections` rows of (class, score, box) like SSD's output."""

    def __init__(self, image_shape: int, detections: int = 8, classes: int = len(CLASSES)):
        super().__init__()
        self.image_shape, self.detections, self.classes = image_shape, detections, classes
        with self.name_scope():
            self.head = gluon.nn.Dense(detections * 6)

    def hybrid_forward(self, F, x):
        rows = F.sigmoid(self.head(F.contrib.AdaptiveAvgPooling2D(x, output_size=2)))
        rows = F.reshape(rows, (0, self.detections, 6))
        ids = F.floor(F.slice_axis(rows, axis=2, begin=0, end=1) * self.classes * 0.999)
        scores = F.slice_axis(rows, axis=2, begin=1, end=2)
        corner = F.slice_axis(rows, axis=2, begin=2, end=4) * 0.5
        size = F.slice_axis(rows, axis=2, begin=4, end=6) * 0.5
        boxes = F.concat(corner, corner + size, dim=2) * self.image_shape
        return ids, scores, boxes


def export_tiny_model(directory: Path, image_shape: int = 64,
                      classes: tuple[str, ...] = CLASSES) -> Path:
    """The tiny detector exported as `train` exports the SSD (same files, same model_info)."""
    mx.random.seed(0)
    net = TinyDetector(image_shape, classes=len(classes))
    net.initialize(mx.init.Uniform(3.0))
    net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    save_artifact(net, Path(directory), ModelInfo(classes, image_shape, "vgg-16", 0.45),
                  {"num_classes": len(classes)})
    return Path(directory)
