"""The NumPy SSD target encoder gives exactly GluonCV's SSDTargetGenerator targets (as used by
SSDDefaultTrainTransform), bit for bit, and handles images without objects (GluonCV's fails on
them)."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

from anchor_grid import anchors
from ssd_sagemaker.data.transforms.targets import SSDTargetEncoder, box_iou


def test_iou() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0, 1]], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_targets_equal_gluoncv(seed: int) -> None:
    grid = anchors()
    generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                   negative_mining_ratio=-1)
    encoder = SSDTargetEncoder(grid)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        count = int(rng.integers(1, 6))
        corner = rng.uniform(0, 250, (count, 2))
        boxes = np.hstack([corner, np.minimum(corner + rng.uniform(8, 200, (count, 2)), 300)])
        boxes = boxes.astype(np.float32)
        ids = rng.integers(0, 4, count)
        cls, box, _ = generator(mx.nd.array(grid[None]), None, mx.nd.array(boxes[None]),
                                mx.nd.array(ids[None, :, None].astype(np.float32)))
        ours_cls, ours_box = encoder(boxes, ids)
        np.testing.assert_array_equal(ours_cls, cls[0].asnumpy())
        # Bit-identical, not close (targets.py: a from-scratch run amplifies any difference).
        np.testing.assert_array_equal(ours_box, box[0].asnumpy())
        assert (ours_cls > 0).sum() >= count  # every object has at least one anchor


def test_no_objects_means_all_background() -> None:
    cls, box = SSDTargetEncoder(anchors())(np.zeros((0, 4), np.float32), np.zeros(0, int))
    assert cls.shape == (len(anchors()),) and not cls.any() and not box.any()
