"""Pure request handling: check and decode image bytes, run the exported network, keep the
detections a request asked for. Rows follow the built-in algorithm:
`[class_id, score, xmin, ymin, xmax, ymax]`, coordinates as fractions of the image size."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import mxnet as mx
import numpy as np

from ssd_sagemaker.data.transforms import network_input
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.model.artifact import ModelInfo, load_exported_network, read_model_info
from ssd_sagemaker.serving.config import DEFAULT_MAX_IMAGE_PIXELS, DetectionLimits
from ssd_sagemaker.serving.image_checks import check_image
from ssd_sagemaker.serving.request_errors import UndecodableImage

SUPPORTED_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")


def decode_image(body: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> mx.nd.NDArray:
    """Complete JPEG/PNG bytes → HWC RGB uint8. The header is checked first (format, size,
    completeness), so an oversized or truncated image is refused without being decoded."""
    header = check_image(body, max_pixels)
    try:
        image = mx.image.imdecode(body, flag=1)
    except mx.base.MXNetError:
        raise UndecodableImage(f"the body could not be decoded as a {header.format.upper()} "
                               f"image (its data is corrupt)") from None
    if image.size == 0:
        raise UndecodableImage("the decoded image is empty")
    return image


def select_detections(rows: Sequence[Sequence[float]], limits: DetectionLimits
                      ) -> list[list[float]]:
    """The best `max_detections` rows scoring at least `score_threshold`, best first."""
    ranked = sorted(rows, key=lambda row: -row[1])  # stable: equal scores keep network order
    return [list(row) for row in ranked if row[1] >= limits.score_threshold][:limits.max_detections]


class Predictor:
    """The exported SSD with its metadata; thread-safe (one forward at a time per process)."""

    def __init__(self, model_dir: Path, context: mx.Context | None = None):
        self.info: ModelInfo = read_model_info(model_dir)
        self._context = context or available_contexts()[0]
        self._net = load_exported_network(model_dir, self._context)
        self._lock = threading.Lock()

    def detect(self, image: mx.nd.NDArray) -> list[list[float]]:
        """Detections sorted by score: [class_id, score, xmin, ymin, xmax, ymax] (fractions)."""
        tensor = network_input(image, self.info.image_shape).as_in_context(self._context)
        with self._lock:
            ids, scores, boxes = self._net(tensor)
            ids, scores, boxes = ids[0].asnumpy(), scores[0].asnumpy(), boxes[0].asnumpy()
        keep = ids[:, 0] >= 0
        boxes = np.clip(boxes[keep] / float(self.info.image_shape), 0.0, 1.0)
        return [[float(c), float(s), *map(float, b)]
                for c, s, b in zip(ids[keep, 0], scores[keep, 0], boxes)]

    def predict_bytes(self, body: bytes, limits: DetectionLimits = DetectionLimits()
                      ) -> dict[str, list[list[float]]]:
        """The built-in's response object for one encoded image."""
        return {"prediction": select_detections(self.detect(decode_image(body)), limits)}
