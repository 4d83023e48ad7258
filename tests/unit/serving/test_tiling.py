"""Tiled inference (serving/tiling.py): the grid covers the image with the last row and column
on its edges, tile rows map back to fractions of the whole image, seams are told from image
edges, duplicates across seams merge into one box per object (the rule itself is tested in
test_tile_merge.py), the tile count is bounded with a 400, and the deadline stops the work
between batches.

The detector here finds solid shapes by their pixels (tests/support/shape_finder.py), so what
each tile sees, and hence what is cut by a seam, is computed, not assumed."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from serving_samples import encode
from shape_finder import ShapeFinder, canvas
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.serving.attributes import detection_limits
from ssd_sagemaker.serving.config import (
    DEFAULT_MAX_TILES,
    DetectionLimits,
    read_request_limits,
    read_serving_config,
)
from ssd_sagemaker.serving.deadline import RequestClock, WorkTimedOut
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.request_errors import InvalidAttribute
from ssd_sagemaker.serving.tiling import (
    TILE_BATCH,
    Tile,
    TooManyTiles,
    detect_tiled,
    tile_grid,
    to_image_rows,
)

HALF_300 = DetectionLimits(tile=300, tile_overlap=0.5)  # 300-px tiles at half overlap

def test_the_grid_covers_the_image_and_ends_on_its_edges():
    tiles = tile_grid(1000, 700, 300, 0.5)
    lefts = sorted({t.left for t in tiles})
    tops = sorted({t.top for t in tiles})
    assert lefts == [0, 150, 300, 450, 600, 700]  # the last column ends at 1000
    assert tops == [0, 150, 300, 400]  # the last row ends at 700
    assert len(tiles) == len(lefts) * len(tops)
    assert all((t.width, t.height) == (300, 300) for t in tiles)
    covered = np.zeros((700, 1000), bool)
    for t in tiles:
        covered[t.top:t.top + t.height, t.left:t.left + t.width] = True
    assert covered.all()


def test_an_image_smaller_than_a_tile_is_one_tile_of_its_size():
    assert tile_grid(200, 120, 300, 0.25) == [Tile(0, 0, 200, 120)]
    assert [t.left for t in tile_grid(500, 120, 300, 0.0)] == [0, 200]


def test_rows_map_to_fractions_of_the_whole_image_and_seams_are_not_image_edges():
    tile = Tile(300, 150, 300, 300)  # inside a 1000x600 image: all four sides are seams
    rows = [[0, 0.9, 0.5, 0.5, 0.6, 0.6],   # in the middle: whole
            [1, 0.8, 0.0, 0.4, 0.2, 0.5],   # on the left seam
            [1, 0.7, 0.4, 0.8, 0.5, 1.0]]   # on the bottom seam
    found, cut = to_image_rows(rows, tile, 1000, 600)
    assert found[0, 2:] == pytest.approx([450 / 1000, 300 / 600, 480 / 1000, 330 / 600])
    assert list(cut) == [False, True, True]
    corner = Tile(0, 0, 300, 300)  # the image's own top and left edges are no seams
    _, cut = to_image_rows([[0, 0.9, 0.0, 0.0, 0.2, 0.2]], corner, 1000, 600)
    assert list(cut) == [False]


def test_objects_across_seams_are_found_once_and_whole_in_batches():
    # 900x600 with tiles of 300 at half overlap: seams at every 150 px; each square lies on one
    shapes = [(0, 130, 130, 60), (1, 440, 280, 50), (0, 700, 450, 80), (1, 30, 500, 40)]
    image = canvas(900, 600, shapes)
    finder = ShapeFinder()
    rows = detect_tiled(finder, image, HALF_300)
    expected = sorted([float(c), 0.9, x / 900, y / 600, (x + s) / 900, (y + s) / 600]
                      for c, x, y, s in shapes)
    assert sorted(rows) == [pytest.approx(row) for row in expected]
    tiles = len(tile_grid(900, 600, 300, 0.5))
    assert finder.batches == [TILE_BATCH] * -(-tiles // TILE_BATCH)  # padded to one shape


def test_the_pipeline_tiles_when_asked_and_answers_in_fractions_of_the_whole_image():
    image = canvas(1200, 400, [(1, 1000, 100, 30)])
    body = encode(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), ".png")
    found = detect_in_bytes(ShapeFinder(), body, 10_000_000, DetectionLimits(tile=400))
    assert found.image.shape == (400, 1200, 3)  # the drawn image is the whole picture
    assert found.rows == [pytest.approx([1.0, 0.9, 1000 / 1200, 100 / 400, 1030 / 1200,
                                         130 / 400])]


def test_too_many_tiles_is_a_400_naming_the_count_the_limit_and_the_fix():
    with pytest.raises(TooManyTiles) as error:
        detect_tiled(ShapeFinder(), canvas(4000, 3000, []), DetectionLimits(tile=100,
                                                                            tile_overlap=0.5))
    assert error.value.status == 400
    count = len(tile_grid(4000, 3000, 100, 0.5))
    assert count == 79 * 59 > DEFAULT_MAX_TILES
    assert (f"tile=100,overlap=0.5 cuts this 4000x3000 image into {count} tiles, above the "
            f"limit of {DEFAULT_MAX_TILES} (SSD_MAX_TILES); use larger tiles or less overlap, "
            f"send a smaller image, or raise SSD_MAX_TILES") in error.value.message


def test_the_issues_recipe_is_taken_and_ssd_max_tiles_sets_the_limit():
    # 300-px tiles at half overlap on the demo-style 5x5 mosaic (docs/tiling.md): 13 x 10
    image = canvas(1975, 1585, [(0, 700, 700, 60)])
    assert len(tile_grid(1975, 1585, 300, 0.5)) == 130 <= DEFAULT_MAX_TILES
    finder = ShapeFinder()
    rows = detect_tiled(finder, image, HALF_300)
    assert rows == [pytest.approx([0.0, 0.9, 700 / 1975, 700 / 1585, 760 / 1975, 760 / 1585])]
    assert sum(finder.batches) == 132  # 130 tiles in batches of 4, the last padded
    served = read_serving_config({"SSD_MAX_TILES": "129", "SSD_TILE": "300",
                                  "SSD_TILE_OVERLAP": "0.5"}, cpus=1, gpus=0)
    assert served.limits.max_tiles == 129
    with pytest.raises(TooManyTiles) as error:
        detect_tiled(ShapeFinder(), image, served.limits)
    assert "into 130 tiles, above the limit of 129 (SSD_MAX_TILES)" in error.value.message
    # a request cannot raise the server's bound: max_tiles is no custom attribute
    assert detection_limits("max_tiles=1000", served.limits).max_tiles == 129
    assert read_request_limits({"SSD_MAX_TILES": "500"})[1].max_tiles == 500  # predict's too
    with pytest.raises(ClientError) as refused:
        read_serving_config({"SSD_MAX_TILES": "0"}, cpus=1, gpus=0)
    assert "SSD_MAX_TILES='0' is not an integer from 1 to 10000 (default 256)" in \
        str(refused.value)


def test_the_deadline_stops_the_tiles_as_soon_as_the_rest_cannot_finish():
    finder = ShapeFinder(seconds_per_batch=0.3)
    clock = RequestClock(1.0)
    started = time.monotonic()
    with pytest.raises(WorkTimedOut) as error:
        detect_tiled(finder, canvas(1500, 1500, []), HALF_300, clock)
    assert time.monotonic() - started < 1.0  # before the deadline, not at it
    assert error.value.status == 503
    assert len(finder.batches) < -(-len(tile_grid(1500, 1500, 300, 0.5)) // TILE_BATCH)
    assert "tiles took" in error.value.message


class BiasedFinder(ShapeFinder):
    """Like a real network, places a box a little off, and differently in each tile: pulled
    towards the tile's centre by a fifth of the box's width."""

    def _find(self, image):
        rows = super()._find(image)
        for row in rows:
            shift = 0.2 * (row[4] - row[2]) * (1 if (row[2] + row[4]) / 2 < 0.5 else -1)
            row[2] += shift
            row[4] += shift
        return rows


def test_two_tiles_boxes_of_one_object_that_disagree_are_merged_into_one():
    # the square lies whole in the tiles at 0 and 150, right of one's centre, left of the other's
    image = canvas(600, 300, [(0, 200, 100, 40)])
    rows = detect_tiled(BiasedFinder(), image, HALF_300)
    assert len(rows) == 1, rows  # their IoU is 0.43: below the model's NMS threshold of 0.45


def test_tiling_is_asked_for_by_attribute_variable_or_option(tmp_path, caplog):
    from ssd_sagemaker.cli import main

    served = read_serving_config({"SSD_TILE": "400", "SSD_TILE_OVERLAP": "0.5"}, cpus=1, gpus=0)
    assert (served.limits.tile, served.limits.tile_overlap) == (400, 0.5)
    asked = detection_limits("tile=512, overlap=0.3;score_threshold=0.2", served.limits)
    assert (asked.tile, asked.tile_overlap, asked.score_threshold) == (512, 0.3, 0.2)
    assert detection_limits("tile=0", served.limits).tile == 0  # off for this request
    with pytest.raises(InvalidAttribute) as error:
        detection_limits("tile=16", served.limits)
    assert "tile='16' is invalid: expected 0 (the whole image) or a tile size from 32" in \
        error.value.message
    with pytest.raises(ClientError) as refused:
        read_serving_config({"SSD_TILE_OVERLAP": "1"}, cpus=1, gpus=0)
    assert "SSD_TILE_OVERLAP='1' is not a fraction of a tile from 0 to 0.9" in str(refused.value)
    image = tmp_path / "a.png"
    image.write_bytes(encode(canvas(64, 64, [])))
    assert main(["predict", str(image), "--model-dir", str(tmp_path), "--tile", "9000"]) == 1
    assert "--tile: tile='9000' is invalid" in caplog.text
