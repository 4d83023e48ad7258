"""decode → detect → select → render: the one path from an image's bytes to a response's bytes,
shared by `POST /invocations`, `ssd-sagemaker predict` and the serving benchmark, so that what
one answers the others answer too (the inference toolkit's input → predict → output).

The pixel limit and the detection limits are arguments without defaults: every caller says
which apply (the endpoint's, from `ServingConfig` and the request), so none can forget one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssd_sagemaker.data.checks.images import BadImage, TooManyPixels, UnsupportedFormat, decode
from ssd_sagemaker.serving.config import (
    DEFAULT_DRAW_THRESHOLD,
    DEFAULT_MAX_IMAGE_PIXELS,
    DetectionLimits,
)
from ssd_sagemaker.serving.deadline import RequestClock
from ssd_sagemaker.serving.negotiation import ResponseFormat
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.rendering import class_name
from ssd_sagemaker.serving.request_errors import (
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
)
from ssd_sagemaker.serving.responses import drawn_rows, response_body
from ssd_sagemaker.serving.tiling import detect_tiled

SUPPORTED_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")


def decode_image(body: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Complete JPEG/PNG bytes → HWC RGB uint8, by the same rules as training
    (data/checks/images.py): another format is 415, more than `max_pixels` 413 (before
    decoding), anything else that is not a fully decoded JPEG/PNG 400."""
    try:
        return decode(body, max_pixels)
    except UnsupportedFormat as error:
        raise UnsupportedMediaType(f"the body {error}") from None
    except TooManyPixels as error:
        raise PayloadTooLarge(f"the image {error}, or raise SSD_MAX_IMAGE_PIXELS") from None
    except BadImage as error:
        raise UndecodableImage(f"the body {error}") from None


def select_detections(rows: Sequence[Sequence[float]], limits: DetectionLimits
                      ) -> list[list[float]]:
    """The best `max_detections` rows scoring at least `score_threshold`, best first."""
    ranked = sorted(rows, key=lambda row: -row[1])  # stable: equal scores keep network order
    return [list(row) for row in ranked if row[1] >= limits.score_threshold][:limits.max_detections]


@dataclass(frozen=True)
class Detections:
    """One image's selected detections with the pixels they were found in: renderable in any
    response format without running the network again (`predict` writes two)."""

    image: np.ndarray  # HWC RGB uint8
    rows: list[list[float]]  # [class_id, score, xmin, ymin, xmax, ymax], fractions, best first
    classes: Sequence[str]
    draw_threshold: float = DEFAULT_DRAW_THRESHOLD

    def render(self, response_format: ResponseFormat = ResponseFormat.JSON) -> bytes:
        """The response body in `response_format` (default: the built-in algorithm's JSON)."""
        return response_body(response_format, self.rows, self.image, self.classes,
                             self.draw_threshold)

    def drawn_summary(self) -> str:
        """What a drawn image shows, counted by class: "2 circle, 1 square" (or "nothing")."""
        counts = Counter(class_name(self.classes, row[0])
                         for row in drawn_rows(self.rows, self.draw_threshold))
        return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"


def detect_in_bytes(predictor: Predictor, body: bytes, max_pixels: int,
                    limits: DetectionLimits, clock: RequestClock | None = None) -> Detections:
    """The detections `limits` keeps in an encoded image of at most `max_pixels`, found in the
    whole image or in its tiles (`limits.tile`; within `clock`'s deadline). A body that is not a
    usable image raises the `RequestError` the endpoint answers with (400, 413 or 415)."""
    image = decode_image(body, max_pixels)
    rows = detect_tiled(predictor, image, limits, clock) if limits.tile else \
        predictor.detect(image)
    return Detections(image, select_detections(rows, limits), predictor.info.classes,
                      limits.draw_threshold)
