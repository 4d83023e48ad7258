"""Batch requests tile as single images do (serving/batches.py): a JSON Lines or RecordIO body
with `tile` (the request's attribute, or `SSD_TILE` as batch transform sets it) answers each
line with what the image alone gets, tiled; its tiles go through the network in batches; and a
line cut into too many tiles is refused naming the line."""

from __future__ import annotations

import base64
import io
import json

import cv2
import pytest

from serving_samples import encode
from shape_finder import ShapeFinder, canvas
from ssd_sagemaker.data.formats.recordio import pack, write_record
from ssd_sagemaker.serving.attributes import detection_limits
from ssd_sagemaker.serving.batches import RECORDIO, answer_batch
from ssd_sagemaker.serving.config import read_serving_config
from ssd_sagemaker.serving.negotiation import JSON_LINES, ResponseFormat
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.request_errors import RequestError
from ssd_sagemaker.serving.tiling import TILE_BATCH, tile_grid

PIXELS = 10_000_000
# squares on seams of 300-px tiles at half overlap (every 150 px), and one in a corner
SCENES = [canvas(900, 600, [(0, 130, 130, 60), (1, 440, 280, 50)]),
          canvas(640, 480, [(1, 10, 10, 30)]),
          canvas(1000, 700, [(0, 700, 450, 80), (1, 280, 100, 45)])]
BODIES = [encode(cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), ".png") for scene in SCENES]


def _jsonlines(bodies) -> bytes:
    return b"\n".join(json.dumps({"image": base64.b64encode(body).decode(), "id": index}
                                 ).encode() for index, body in enumerate(bodies))


def _recordio(bodies) -> bytes:
    stream = io.BytesIO()
    for index, body in enumerate(bodies):
        write_record(stream, pack([2, 5, 0, 0.1, 0.1, 0.5, 0.5], body, index))
    return stream.getvalue()


def _served_limits(environ, attributes=None):
    served = read_serving_config(environ, cpus=1, gpus=0)
    return detection_limits(attributes, served.limits)


@pytest.mark.parametrize("content_type, body", [(JSON_LINES, _jsonlines(BODIES)),
                                                (RECORDIO, _recordio(BODIES))])
@pytest.mark.parametrize("environ, attributes", [
    ({"SSD_TILE": "300", "SSD_TILE_OVERLAP": "0.5"}, None),  # batch transform's defaults
    ({}, "tile=300,overlap=0.5"),  # the request's attribute
])
def test_each_line_is_tiled_as_its_image_alone(content_type, body, environ, attributes):
    limits = _served_limits(environ, attributes)
    assert (limits.tile, limits.tile_overlap) == (300, 0.5)
    finder = ShapeFinder()
    lines = answer_batch(finder, content_type, body, PIXELS, limits,
                         ResponseFormat.JSON).split(b"\n")
    tiles = [len(tile_grid(s.shape[1], s.shape[0], 300, 0.5)) for s in SCENES]
    assert finder.batches == [TILE_BATCH] * sum(-(-count // TILE_BATCH) for count in tiles)
    alone = [json.loads(detect_in_bytes(ShapeFinder(), image, PIXELS, limits).render())
             for image in BODIES]
    assert [json.loads(line) for line in lines] == [{"id": index, **answer}
                                                     for index, answer in enumerate(alone)]
    first = sorted(alone[0]["prediction"])  # and they are the squares, in whole-image fractions
    assert first == [pytest.approx([0, 0.9, 130 / 900, 130 / 600, 190 / 900, 190 / 600]),
                     pytest.approx([1, 0.9, 440 / 900, 280 / 600, 490 / 900, 330 / 600])]


def test_without_tile_a_batch_goes_through_the_network_whole():
    finder = ShapeFinder()
    answer_batch(finder, JSON_LINES, _jsonlines(BODIES), PIXELS, _served_limits({}),
                 ResponseFormat.JSON)
    assert finder.batches == [2, 1]  # FORWARD_BATCH_IMAGES at a time, no tiles


def test_a_line_cut_into_too_many_tiles_is_refused_naming_it():
    # the first image is 12 tiles, at the limit; the second 24
    limits = _served_limits({"SSD_MAX_TILES": "12"}, "tile=300,overlap=0.5")
    with pytest.raises(RequestError) as error:
        answer_batch(ShapeFinder(), JSON_LINES, _jsonlines(BODIES[1:]), PIXELS, limits,
                     ResponseFormat.JSON)
    assert error.value.status == 400
    assert error.value.message.startswith(
        "line 2: tile=300,overlap=0.5 cuts this 1000x700 image into 24 tiles, above the limit "
        "of 12 (SSD_MAX_TILES)")
