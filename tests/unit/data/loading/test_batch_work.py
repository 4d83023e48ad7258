"""One batch's work, as a loader worker does it: a sample's image read (a file swapped for a FIFO
refused by name, not a worker blocked in open()) and the transformed samples stacked, ragged
fields padded with -1 rows; an image that cannot be used is named and its slot filled by
another sample of the batch (training) or left out (validation)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from deadline import deadline
from planting import corrupt_jpeg, jpeg
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading.batch_work import (
    DROP,
    REPEAT,
    BadSample,
    collate,
    load,
    transform_batch,
)
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


def _pictures(tmp_path, count, corrupt=()):
    samples = []
    for index in range(count):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(corrupt_jpeg() if index in corrupt else jpeg(64, 48, seed=index))
        samples.append(Sample(f"train/{index}.jpg", path, np.zeros((0, 4), np.float32),
                              np.zeros(0, np.int32)))
    return samples


def _first_pixel(image, label, rng):
    return (image[:1, :1].copy(),)


def test_a_refused_image_is_named_and_its_slot_repeated_or_left_out(tmp_path):
    samples = _pictures(tmp_path, 3, corrupt={1})
    refused = (("train/1.jpg", "image is a corrupt JPEG: its image data cannot be decoded "
                               "(libjpeg-turbo: Could not determine subsampling level of JPEG "
                               "image)"),)
    full = transform_batch(_first_pixel, samples, seed=0, bad_images=REPEAT)
    assert full.refused == refused
    (pixels,) = full.arrays
    assert pixels.shape[0] == 3 and (pixels[1] == pixels[0]).all()  # sample 0 fills slot 1
    kept = transform_batch(_first_pixel, samples, seed=0, bad_images=DROP)
    assert kept.refused == refused and kept.arrays[0].shape[0] == 2
    with pytest.raises(BadSample, match=r"^train/1.jpg: image is a corrupt JPEG"):
        transform_batch(_first_pixel, samples, seed=0)


def test_a_batch_with_no_usable_image_cannot_be_completed(tmp_path):
    samples = _pictures(tmp_path, 2, corrupt={0, 1})
    assert transform_batch(_first_pixel, samples, seed=0, bad_images=DROP).arrays is None
    with pytest.raises(ClientError, match=r"^No image of a batch of 2 could be used, so the "
                                          r"batch cannot be completed: train/0.jpg: image is a "
                                          r"corrupt JPEG"):
        transform_batch(_first_pixel, samples, seed=0, bad_images=REPEAT)
