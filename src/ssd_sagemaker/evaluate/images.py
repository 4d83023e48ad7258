"""The images an evaluation scores: each one's ground truth and detections, as fractions of its
size, from the model through the serving predictor or from batch-transform answers
(`<image>.out`, the built-in algorithm's JSON)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssd_sagemaker.data.checks.images import BadImage, inspect_bytes
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.formats.recordio import RecordIOFormatError
from ssd_sagemaker.data.loading.batch_work import image_bytes
from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

ANSWER_SUFFIX = ".out"  # batch transform names the answer to `photo.jpg` `photo.jpg.out`


@dataclass(frozen=True)
class EvaluatedImage:
    """One image's ground truth and detections; boxes are (xmin, ymin, xmax, ymax) fractions."""

    name: str  # the image's file name (batch transform answers it as <name>.out)
    width: int
    height: int
    truth_boxes: np.ndarray  # (N, 4)
    truth_ids: np.ndarray  # (N,) int
    difficult: np.ndarray  # (N,) bool
    detections: np.ndarray  # (M, 6): class_id, score, xmin, ymin, xmax, ymax; best first


def image_name(sample: Sample) -> str:
    """The name batch transform gives the image's answer (without `.out`): its file name; a
    record of a RecordIO file or stream has none, so its origin stands in."""
    if isinstance(sample.image, Path):
        return sample.image.name
    return sample.origin.replace("/", "_").replace(" ", "_")


def encoded_image(sample: Sample) -> bytes:
    """The sample's encoded image; unreadable is a ClientError naming the sample."""
    try:
        return image_bytes(sample)
    except RecordIOFormatError as error:
        raise ClientError(f"{sample.origin}: image {error}") from None
    except OSError as error:
        raise ClientError(f"{sample.origin}: cannot read the image ({error.strerror})") from None


def evaluated(sample: Sample, width: int, height: int, rows: Sequence[Sequence[float]]
              ) -> EvaluatedImage:
    """The sample's ground truth beside detection rows, best score first."""
    detections = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    detections = detections[np.argsort(-detections[:, 1], kind="stable")]
    ids = np.asarray(sample.class_ids, dtype=np.int64)
    difficult = (np.asarray(sample.difficult, dtype=bool) if len(sample.difficult) == len(ids)
                 else np.zeros(len(ids), dtype=bool))
    return EvaluatedImage(image_name(sample), width, height,
                          np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4), ids,
                          difficult, detections)


def answer_rows(path: Path) -> list[list[float]]:
    """The detections of one batch-transform answer: `{"prediction": [[class_id, score, xmin,
    ymin, xmax, ymax], ...]}` with coordinates as fractions; anything else is a ClientError
    naming the file and the row."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise ClientError(f"cannot read {path} ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClientError(f"{path} is not JSON ({error}); batch transform writes the endpoint's "
                          f"JSON answer (Accept: application/json) to <image>.out") from None
    rows = document.get("prediction") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise ClientError(f"{path} has no \"prediction\" list: expected the built-in algorithm's "
                          f"JSON, {{\"prediction\": [[class_id, score, xmin, ymin, xmax, ymax], "
                          f"...]}}")
    for index, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 6 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in row)):
            raise ClientError(f"{path}: prediction {index} is {json.dumps(row)[:80]}, not six "
                              f"numbers [class_id, score, xmin, ymin, xmax, ymax]")
        if row[0] < 0 or row[0] != int(row[0]):
            raise ClientError(f"{path}: prediction {index} has class_id {row[0]}; class ids "
                              f"are whole numbers from 0, as the endpoint answers them")
    return [[float(v) for v in row] for row in rows]


def read_answers(folder: Path, samples: Sequence[Sample]) -> list[EvaluatedImage]:
    """Each sample beside its answer in `folder` (`<image name>.out`); a missing answer is a
    ClientError listing the first ones missing."""
    if not folder.is_dir():
        raise ClientError(f"--predictions {folder} is not a folder: give the folder of "
                          f"batch-transform outputs (<image>.out files)")
    missing = [f"{image_name(s)}{ANSWER_SUFFIX}" for s in samples
               if not (folder / f"{image_name(s)}{ANSWER_SUFFIX}").is_file()]
    if missing:
        raise ClientError(f"{folder} lacks the answers to {len(missing)} of {len(samples)} "
                          f"images: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
                          f"run the batch transform on the channel's images, or evaluate "
                          f"the channel they came from")
    expected = {f"{image_name(s)}{ANSWER_SUFFIX}" for s in samples}
    extra = [p.name for p in folder.glob(f"*{ANSWER_SUFFIX}") if p.name not in expected]
    if extra:
        LOG.warning("%s: %d answers to images not in the channel are left out (%s)", folder,
                    len(extra), ", ".join(sorted(extra)[:3]))
    images = []
    for sample in samples:
        header = _header(sample)
        rows = answer_rows(folder / f"{image_name(sample)}{ANSWER_SUFFIX}")
        images.append(evaluated(sample, header[0], header[1], rows))
    return images


def _header(sample: Sample) -> tuple[int, int]:
    try:
        header = inspect_bytes(encoded_image(sample))
    except BadImage as error:
        raise ClientError(f"{sample.origin}: image {error}") from None
    return header.width, header.height
