"""The model's answers to a channel's images, through the serving path (`detect_in_bytes`: the
same decoding, resizing, network and limits as `serve`, score threshold 0 and 100 detections
by default — the built-in algorithm's)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluate.images import EvaluatedImage, encoded_image, evaluated
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import RequestError

LOG = logging.getLogger(__name__)


def predict_images(predictor: Predictor, samples: Sequence[Sample], max_pixels: int,
                   limits: DetectionLimits, keep_pixels: int = 0
                   ) -> tuple[list[EvaluatedImage], list[np.ndarray]]:
    """Every sample's detections, and the decoded pixels of the first `keep_pixels` images
    (for the side-by-side pictures). An image serve would refuse is a ClientError naming it."""
    images, pixels = [], []
    every = max(1, len(samples) // 10)
    for index, sample in enumerate(samples):
        try:
            found = detect_in_bytes(predictor, encoded_image(sample), max_pixels, limits)
        except RequestError as error:
            raise ClientError(f"{sample.origin}: {error}") from None
        height, width = found.image.shape[:2]
        images.append(evaluated(sample, width, height, found.rows))
        if index < keep_pixels:
            pixels.append(found.image)
        if (index + 1) % every == 0 or index + 1 == len(samples):
            LOG.info("predicted %d of %d images", index + 1, len(samples))
    return images, pixels
