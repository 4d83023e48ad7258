"""Batch requests: many images in one `POST /invocations`, as batch transform sends them with
`BatchStrategy=MultiRecord` (`SplitType=Line` or `RecordIO`), answered in `application/jsonlines`:
one line per image, in order, each the single-image answer (with the line's `"id"`, when given).

- `application/jsonlines`: one `{"image": "<base64 JPEG/PNG>", "id": <optional>}` per line.
- `application/x-recordio`: image records as `convert` (and im2rec) write them
  (data/formats/recordio.py); each answer carries the record's id.

The answer is all or nothing: a bad line or record is refused naming it (400; an image the
single-image rules refuse keeps its status, 413 or 415), and nothing is answered for the others.
Images go through the network FORWARD_BATCH_IMAGES at a time, decoded just before, so a request
holds the pixels of one forward batch at most. With `tile` (the request's attribute or
`SSD_TILE`, as batch transform sets it), each image is found in its tiles as a single image is.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssd_sagemaker.data.formats.recordio import RecordIOFormatError, iter_records, unpack
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.deadline import RequestClock
from ssd_sagemaker.serving.negotiation import JSON_LINES, ResponseFormat
from ssd_sagemaker.serving.pipeline import Detections, decode_image, select_detections
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import RequestError
from ssd_sagemaker.serving.tiling import detect_tiled
from ssd_sagemaker.user_json import shown

RECORDIO = "application/x-recordio"
BATCH_CONTENT_TYPES = (JSON_LINES, RECORDIO)
# Images per forward. Measured on VGG-16 SSD300, 2 cores: 0.46 images/s one at a time, 0.41 in
# forwards of 4 and of 8, and each image of a forward adds ~110 MB to the worker's peak (878 MB
# at 1, 1102 at 4, 1551 at 8): on CPUs a larger forward buys no speed and costs memory.
FORWARD_BATCH_IMAGES = 2


class BadBatchItem(RequestError, ValueError):
    """A line or record of a batch that is not an image the server can take (400)."""


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: where it is (`line 3`, `record 2`), its id, its encoded bytes."""

    where: str
    image: bytes
    id: Any = None


def jsonlines_items(body: bytes) -> list[BatchItem]:
    """The images of a JSON Lines body (blank lines skipped; lines counted from 1)."""
    items = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.strip():
            items.append(_jsonlines_item(f"line {number}", line))
    return items


def _jsonlines_item(where: str, line: bytes) -> BatchItem:
    hint = 'each line must be a JSON object {"image": "<base64 JPEG or PNG>"} (optional "id")'
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise BadBatchItem(f"{where} is not JSON; {hint}") from None
    if not isinstance(value, dict) or not isinstance(value.get("image"), str):
        raise BadBatchItem(f"{where} has no \"image\" string; {hint}")
    try:
        image = base64.b64decode(value["image"], validate=True)
    except (binascii.Error, ValueError):
        raise BadBatchItem(f"{where}: \"image\" is not base64 ({len(value['image'])} "
                           f"characters); {hint}") from None
    identifier = value.get("id")
    if not isinstance(identifier, (str, int, float, type(None))) or isinstance(identifier, bool):
        raise BadBatchItem(f"{where}: \"id\" is {shown(identifier, 40)}; it must be a string "
                           f"or a number")
    return BatchItem(where, image, identifier)


def recordio_items(body: bytes) -> list[BatchItem]:
    """The images of a RecordIO body: image records (header, label, image), each framed."""
    items = []
    try:
        for number, (_, record) in enumerate(iter_records(io.BytesIO(body)), start=1):
            try:
                _, image, record_id = unpack(record)
            except RecordIOFormatError as error:
                raise BadBatchItem(f"record {number}: {error}; send image records as "
                                   f"`convert --to recordio` or im2rec write them") from None
            items.append(BatchItem(f"record {number}", image, record_id))
    except RecordIOFormatError as error:
        raise BadBatchItem(f"the body is not RecordIO after {len(items)} records: {error}; "
                           f"send whole records (SplitType=RecordIO)") from None
    return items


def batch_items(content_type: str, body: bytes) -> list[BatchItem]:
    """The images of a batch body of `content_type` (one of BATCH_CONTENT_TYPES); none: 400."""
    items = recordio_items(body) if content_type == RECORDIO else jsonlines_items(body)
    if not items:
        raise BadBatchItem(f"the {content_type} body holds no image; send one per "
                           f"{'record' if content_type == RECORDIO else 'line'}")
    return items


@contextmanager
def _naming(item: BatchItem) -> Iterator[None]:
    """A refusal of the item's image names the item and keeps the single-image status."""
    try:
        yield
    except RequestError as error:
        raise RequestError(f"{item.where}: {error.message}", error.status) from None


def _decoded(item: BatchItem, max_pixels: int) -> np.ndarray:
    """The item's pixels (a refusal names the item)."""
    with _naming(item):
        return decode_image(item.image, max_pixels)


def _found(predictor: Predictor, chunk: Sequence[BatchItem], images: list[np.ndarray],
           limits: DetectionLimits, clock: RequestClock | None) -> list[list[list[float]]]:
    """Each image's rows: the images through the network together, or, with `limits.tile`,
    each in its tiles (which go through the network in batches of their own)."""
    if not limits.tile:
        return predictor.detect_batch(images)
    found = []
    for item, image in zip(chunk, images):
        with _naming(item):
            found.append(detect_tiled(predictor, image, limits, clock))
    return found


def _chunks(items: Sequence[BatchItem], size: int) -> Iterator[Sequence[BatchItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def detect_batch(predictor: Predictor, items: Sequence[BatchItem], max_pixels: int,
                 limits: DetectionLimits, clock: RequestClock | None = None
                 ) -> list[Detections]:
    """Each item's detections, as `detect_in_bytes` gives them for the image alone (tiled
    too, within `clock`'s deadline). Only the image's shape is kept (a batch answer draws
    nothing), so pixels live for one forward."""
    found = []
    for chunk in _chunks(items, FORWARD_BATCH_IMAGES):
        images = [_decoded(item, max_pixels) for item in chunk]
        for image, rows in zip(images, _found(predictor, chunk, images, limits, clock)):
            shape_only = np.broadcast_to(np.zeros(1, dtype=np.uint8), image.shape)
            found.append(Detections(shape_only, select_detections(rows, limits),
                                    predictor.info.classes, limits.draw_threshold))
    return found


def render_batch(items: Sequence[BatchItem], found: Sequence[Detections],
                 line_format: ResponseFormat) -> bytes:
    """The `application/jsonlines` answer: one line per item, in order, each the single-image
    answer in `line_format`, with `"id"` first when the item has one."""
    lines = []
    for item, detections in zip(items, found):
        line = detections.render(line_format)
        if item.id is not None:
            answer = {"id": item.id, **json.loads(line)}
            line = json.dumps(answer, separators=(",", ":")).encode("utf-8")
        lines.append(line)
    return b"\n".join(lines)


def answer_batch(predictor: Predictor, content_type: str, body: bytes, max_pixels: int,
                 limits: DetectionLimits, line_format: ResponseFormat,
                 clock: RequestClock | None = None) -> bytes:
    """A batch body → its `application/jsonlines` answer (all of it, or a refusal)."""
    items = batch_items(content_type, body)
    return render_batch(items, detect_batch(predictor, items, max_pixels, limits, clock),
                        line_format)
