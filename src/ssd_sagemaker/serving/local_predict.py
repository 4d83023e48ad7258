"""`ssd-sagemaker predict`: the serving predictor on local image files, without a server.

For each image it writes `<name>.json` (the endpoint's default JSON) and `<name>.annotated.jpg`
(the boxes drawn), through the pipeline `/invocations` runs (pipeline.py) with the endpoint's
limits (`SSD_MAX_IMAGE_PIXELS`, `SSD_SCORE_THRESHOLD`, `SSD_MAX_DETECTIONS`), so what you see
locally is what the endpoint answers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ssd_sagemaker.data.checks.images import IMAGE_SUFFIXES
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.negotiation import ResponseFormat
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import RequestError

LOG = logging.getLogger(__name__)


def collect_images(inputs: Iterable[Path]) -> list[Path]:
    """The files named, plus the JPEG/PNG files (by suffix) under each folder named, in order.
    Outputs are named after the image, so two images with the same name are refused."""
    images: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images.extend(sorted(p for p in item.rglob("*")
                                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            images.append(item)
        else:
            raise ClientError(f"{item} is neither an image file nor a folder.")
    if not images:
        raise ClientError("No images found in " + ", ".join(map(str, inputs)) +
                          f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files).")
    clashes = sorted(stem for stem, n in Counter(p.stem for p in images).items() if n > 1)
    if clashes:
        raise ClientError(f"Several input images are named {', '.join(clashes)}; their outputs "
                          f"would overwrite each other. Predict them in separate runs.")
    return images


def predict_files(predictor: Predictor, images: Sequence[Path], output_dir: Path,
                  max_pixels: int, limits: DetectionLimits) -> list[Path]:
    """Write the JSON and annotated image of every readable image; the files written. Images
    that cannot be read are skipped and reported together at the end (ClientError)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written, failures = [], []
    for path in images:
        try:
            found = detect_in_bytes(predictor, path.read_bytes(), max_pixels, limits)
        except RequestError as error:
            failures.append(f"{path}: {error}")
            LOG.error("skipping %s: %s", path, error)
            continue
        for suffix, response_format in ((".json", ResponseFormat.JSON),
                                        (".annotated.jpg", ResponseFormat.JPEG)):
            target = output_dir / f"{path.stem}{suffix}"
            target.write_bytes(found.render(response_format))
            written.append(target)
        LOG.info("%s: %d detections; drawn at score >= %g: %s -> %s", path, len(found.rows),
                 found.draw_threshold, found.drawn_summary(), output_dir / path.stem)
    if failures:
        raise ClientError(f"{len(failures)} of {len(images)} images could not be read: " +
                          "; ".join(failures))
    return written
