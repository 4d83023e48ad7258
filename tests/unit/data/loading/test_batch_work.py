"""One batch's work, as a loader worker does it: a sample's image read (a file swapped for a FIFO
refused by name, not a worker blocked in open()) and the transformed samples stacked, ragged
fields padded with -1 rows."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from deadline import deadline
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading.batch_work import collate, load
from ssd_sagemaker.errors import ClientError


def test_collate_pads_only_ragged_fields() -> None:
    images, labels = collate([(np.zeros((3, 2)), np.zeros((0, 6))),
                              (np.ones((3, 2)), np.ones((2, 6)))])
    assert images.shape == (2, 3, 2) and labels.shape == (2, 2, 6)
    assert (labels[0] == -1).all() and (labels[1] == 1).all()


def _sample(path):
    return Sample(origin="train/a.jpg", image=path, boxes=np.zeros((0, 4), np.float32),
                  class_ids=np.zeros(0, np.int32))


def test_a_worker_reads_an_image_file_and_refuses_a_fifo_put_in_its_place(tmp_path):
    """An image replaced by a FIFO after the channel was read: a ClientError naming the
    sample, not a loader worker blocked in open() (issue "Trust boundaries" item 5)."""
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.full((48, 64, 3), 127, dtype=np.uint8))
    image, label = load(_sample(path))
    assert image.shape == (48, 64, 3) and label.shape == (0, 6)
    path.unlink()
    os.mkfifo(path)
    with deadline(10), pytest.raises(ClientError, match=r"^train/a.jpg: image is a FIFO \(named "
                                                        r"pipe\), not a regular file"):
        load(_sample(path))
