"""Pure request handling: decode image bytes, run the exported network, format the built-in
algorithm's JSON (`[class_id, score, xmin, ymin, xmax, ymax]`, coordinates as fractions)."""

from __future__ import annotations

import threading
from pathlib import Path

import mxnet as mx
import numpy as np

from ssd_sagemaker.data.transforms import network_input
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.model.artifact import ModelInfo, load_exported_network, read_model_info

SUPPORTED_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")


class UndecodableImage(ValueError):
    """The request body is not an image we can decode (the client's mistake: HTTP 400)."""


def decode_image(body: bytes) -> mx.nd.NDArray:
    """JPEG/PNG bytes → HWC RGB uint8, or UndecodableImage saying why."""
    if not body:
        raise UndecodableImage("the request body is empty; send the image's bytes")
    try:
        image = mx.image.imdecode(body, flag=1)
    except mx.base.MXNetError:
        raise UndecodableImage("the body could not be decoded as a JPEG or PNG image") from None
    if image.size == 0:
        raise UndecodableImage("the decoded image is empty")
    return image


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

    def predict_bytes(self, body: bytes) -> dict[str, list[list[float]]]:
        """The built-in's response object for one encoded image."""
        return {"prediction": self.detect(decode_image(body))}
