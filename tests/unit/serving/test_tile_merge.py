"""Merging tiles' rows (serving/tile_merge.py): one box per object across seams, whether the
tiles' boxes of it overlap by IoU or one lies mostly inside the other (a fragment cut at a
seam, a neighbour's loose box, what lies within another tile's view of the object); distinct
objects stay apart even when they touch or a loose box lies over both; boxes of one tile lying
within each other stay apart (an image that is one tile answers as untiled); merging stops
after the clusters an answer keeps."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ssd_sagemaker.model.artifact import ModelInfo
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.tile_merge import MERGE_IOU, SEAM_OVERLAP, merge, overlaps
from ssd_sagemaker.serving.tiling import detect_tiled

NMS = 0.45  # the model's NMS threshold, as the demo's


def _merged(boxes, cut=None, tiles=None):
    """`merge` of rows [class, score, xmin, ymin, xmax, ymax]; by default none touches a seam
    and each comes from a tile of its own."""
    rows = np.asarray(boxes, dtype=np.float64)
    cut = np.zeros(len(rows), bool) if cut is None else np.asarray(cut)
    tiles = np.arange(len(rows)) if tiles is None else np.asarray(tiles)
    return merge(rows, cut, tiles, NMS)


def test_a_fragment_cut_at_a_seam_and_the_whole_box_from_a_neighbour_are_one_box():
    whole = [0, 0.80, 0.40, 0.40, 0.50, 0.50]
    fragment = [0, 0.90, 0.40, 0.40, 0.42, 0.50]  # the tile's edge at 0.42 cut the object
    iou, within = overlaps(np.array(fragment[2:]), np.array([whole[2:]]))
    assert iou[0] < MERGE_IOU <= within[0]  # NMS alone would keep both
    merged = _merged([fragment, whole], cut=[True, False])
    assert merged == [pytest.approx([0, 0.90, 0.40, 0.40, 0.50, 0.50])]  # best score, whole box


def test_two_tiles_loose_boxes_of_one_object_lying_mostly_within_each_other_are_one_box():
    # the demo model's triangle at (431, 674)-(523, 766) in the 1975x1585 mosaic, boxed by two
    # tiles, neither box touching a seam (docs/tiling.md)
    size = np.array([1975, 1585, 1975, 1585])
    first = [2, 0.94, *(np.array([431.0, 681.3, 511.0, 786.5]) / size)]
    second = [2, 0.91, *(np.array([470.2, 669.6, 536.8, 755.3]) / size)]
    iou, within = overlaps(np.array(first[2:]), np.array([second[2:]]))
    assert iou[0] == pytest.approx(0.27, abs=0.01) and within[0] >= SEAM_OVERLAP
    assert _merged([first, second]) == [pytest.approx(first)]


def test_two_distinct_touching_objects_stay_two_boxes():
    left = [0, 0.90, 0.10, 0.10, 0.20, 0.20]
    right = [0, 0.80, 0.195, 0.10, 0.295, 0.20]  # loose: overlaps its neighbour by 5 %
    assert _merged([left, right]) == [pytest.approx(left), pytest.approx(right)]
    # even when the one cut by a seam touches it
    assert _merged([left, right], cut=[False, True]) == [pytest.approx(left),
                                                          pytest.approx(right)]
    # and an object inside a box of another class is another object
    inner = [1, 0.70, 0.12, 0.12, 0.18, 0.18]
    assert len(_merged([left, inner])) == 2


def test_a_fragment_within_another_tiles_view_of_the_object_joins_it():
    # a test detector's triangle at (1400, 388)-(1528, 516) of the 1975x1585 mosaic: the best
    # box, a second tile's view of it (IoU 0.56 with it), and a third tile's fragment cut at
    # y = 450 that lies within the second view (0.86) but mostly outside the best box (0.28)
    size = np.array([1975, 1585, 1975, 1585])
    best = [2, 1.00, *(np.array([1404.2, 413.7, 1492.8, 520.1]) / size)]
    view = [2, 0.99, *(np.array([1409.6, 390.2, 1520.0, 513.7]) / size)]
    fragment = [2, 0.95, *(np.array([1458.7, 385.0, 1524.5, 448.6]) / size)]
    _, within = overlaps(np.array(fragment[2:]), np.array([best[2:], view[2:]]))
    assert within[0] < SEAM_OVERLAP <= within[1]
    assert _merged([best, view, fragment], cut=[False, False, True]) == [pytest.approx(best)]


def test_a_loose_box_lying_over_an_object_and_its_neighbour_does_not_join_them():
    first = [0, 0.90, 0.10, 0.10, 0.20, 0.20]
    loose = [0, 0.40, 0.12, 0.10, 0.42, 0.20]  # another tile's: over most of both
    neighbour = [0, 0.80, 0.24, 0.10, 0.34, 0.20]
    iou, within = overlaps(np.array(loose[2:]), np.array([first[2:], neighbour[2:]]))
    assert (iou < MERGE_IOU).all() and (within >= SEAM_OVERLAP).all()
    merged = _merged([first, loose, neighbour], tiles=[0, 1, 0])
    assert merged == [pytest.approx(first), pytest.approx(neighbour)]


def test_a_tiles_lesser_box_is_no_view_of_the_object():
    # another tile's best box of the object, and its low-scoring box agreeing with the object
    # by IoU 0.47 but lying over most of a neighbour (seen on the test detector at 400-px tiles)
    first = [0, 0.90, 0.10, 0.10, 0.20, 0.20]
    view = [0, 0.85, 0.10, 0.10, 0.205, 0.20]
    lesser = [0, 0.10, 0.12, 0.10, 0.27, 0.20]
    neighbour = [0, 0.80, 0.22, 0.10, 0.30, 0.20]
    iou, _ = overlaps(np.array(first[2:]), np.array([lesser[2:]]))
    _, within = overlaps(np.array(neighbour[2:]), np.array([lesser[2:]]))
    assert iou[0] >= MERGE_IOU and within[0] >= SEAM_OVERLAP
    merged = _merged([first, view, lesser, neighbour], tiles=[0, 1, 1, 2])
    assert merged == [pytest.approx(first), pytest.approx(neighbour)]


def test_merging_keeps_one_box_per_object_and_the_whole_one_over_a_fragment():
    rows = [[0, 0.95, 0.50, 0.50, 0.55, 0.60],   # fragment: cut by a seam, best score
            [0, 0.90, 0.45, 0.50, 0.55, 0.60],   # the whole object, from the other tile
            [0, 0.85, 0.451, 0.50, 0.55, 0.601],  # the same whole object, a third tile
            [1, 0.80, 0.45, 0.50, 0.55, 0.60],   # another class at the same place
            [0, 0.70, 0.10, 0.10, 0.20, 0.20]]   # another object
    merged = _merged(rows, cut=[True, False, False, False, False])
    assert merged == [pytest.approx([0, 0.95, 0.45, 0.50, 0.55, 0.60]),
                      pytest.approx([1, 0.80, 0.45, 0.50, 0.55, 0.60]),
                      pytest.approx([0, 0.70, 0.10, 0.10, 0.20, 0.20])]


class FixedNetwork:
    """A network whose every tile's answer is the same rows (fractions of the tile)."""

    info = ModelInfo(("a", "b"), 300, "vgg-16", NMS)

    def __init__(self, rows):
        self.rows = rows

    def detect_batch(self, images):
        return [[list(row) for row in self.rows] for _ in images]


def test_a_tiles_own_nested_boxes_stay_apart_so_one_tile_answers_as_untiled():
    # the network's NMS kept both (IoU 0.14): two objects, as far as that tile can tell (seen:
    # a tile boxing two overlapping triangles together, and one of them alone)
    rows = [[0, 0.9, 0.10, 0.10, 0.50, 0.50], [0, 0.8, 0.30, 0.30, 0.45, 0.45]]
    iou, within = overlaps(np.array(rows[0][2:]), np.array([rows[1][2:]]))
    assert iou[0] < MERGE_IOU and within[0] == 1.0
    image = np.zeros((200, 250, 3), np.uint8)  # smaller than a tile: one tile, as untiled
    assert detect_tiled(FixedNetwork(rows), image, DetectionLimits(tile=300)) == rows
    assert _merged(rows, tiles=[0, 0]) == [pytest.approx(row) for row in rows]
    assert len(_merged(rows, tiles=[0, 1])) == 1  # from two tiles: one object
    assert len(_merged(rows, cut=[True, True], tiles=[0, 0])) == 2  # on its seam, too


def test_merging_stops_after_the_clusters_an_answer_keeps_with_the_same_first_ones():
    # 130 tiles of 100 rows, as an untrained network gives them: merging all took 3.2 s
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 0.95, (13_000, 2))
    rows = np.column_stack([rng.integers(0, 3, 13_000), rng.uniform(0, 1, 13_000), corners,
                            corners + rng.uniform(0.005, 0.05, (13_000, 2))])
    cut = rng.uniform(size=13_000) < 0.2
    tiles = np.repeat(np.arange(130), 100)
    started = time.monotonic()
    first = merge(rows, cut, tiles, NMS, most=100)
    assert time.monotonic() - started < 1.0
    assert len(first) == 100
    everything = merge(rows[:3000], cut[:3000], tiles[:3000], NMS)  # all 13,000: seconds
    assert len(everything) > 2000
    assert merge(rows[:3000], cut[:3000], tiles[:3000], NMS, most=100) == everything[:100]
