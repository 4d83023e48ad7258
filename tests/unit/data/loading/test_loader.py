"""The batch loader: batches made in spawned worker processes arrive as NDArrays of the right
shapes, in order, reproducibly for a seed; validation labels are padded with -1 rows; a sample
whose image turns out undecodable stops training with an error naming it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from anchor_grid import anchors
from planting import corrupt_jpeg, jpeg
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading import batch_work, loader
from ssd_sagemaker.data.loading.loader import Batches, CountedBatches, loader_workers
from ssd_sagemaker.data.loading.worker_pool import WorkerPool
from ssd_sagemaker.data.transforms.presets import TrainTransform, ValTransform
from ssd_sagemaker.errors import ClientError


def _samples(tmp_path: Path, count: int) -> list[Sample]:
    samples = []
    for index in range(count):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(jpeg(120, 90, [(30, 20, 90, 70)], seed=index))
        objects = index % 3  # 0, 1 or 2 objects
        boxes = np.tile([[0.25, 0.2, 0.75, 0.8]], (objects, 1)).astype(np.float32)
        samples.append(Sample(f"train/{index}.jpg", path, boxes,
                              np.arange(objects, dtype=np.int32)))
    return samples


@pytest.fixture(scope="module")
def pool():
    workers = WorkerPool(1)
    yield workers
    workers.close()


def test_worker_count_leaves_a_cpu_to_training() -> None:
    assert loader_workers(2) == 1 and loader_workers(8) == 7 and loader_workers(1) == 1


def test_training_batches_from_workers(tmp_path: Path, pool: WorkerPool) -> None:
    samples = _samples(tmp_path, 6)
    transform = TrainTransform(300, anchors())
    batches = CountedBatches(samples, transform, 2, pool, 3, seed=(1,))
    assert len(batches) == 3
    first = list(batches)
    assert len(first) == 3
    for images, cls, box in first:
        assert isinstance(images, mx.nd.NDArray) and images.shape == (2, 3, 300, 300)
        assert cls.shape == (2, len(anchors())) and box.shape == (2, len(anchors()), 4)
    # Images without objects (samples 0 and 3) have only background targets.
    assert not first[0][1][0].asnumpy().any() and first[0][1][1].asnumpy().any()
    # The worker decoded and augmented without loading MXNet (memory, start-up time).
    assert pool.submit(eval, "'mxnet' in __import__('sys').modules").get() is False
    assert pool.submit(eval, "'ssd_sagemaker.data.transforms.presets' in "
                             "__import__('sys').modules").get() is True
    # Same seed, same augmentation, whichever worker ran it; the in-process path agrees.
    again = list(Batches(samples, transform, 2, WorkerPool(0), seed=(1,)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0].asnumpy(), b[0].asnumpy())


def test_validation_labels_are_padded(tmp_path: Path, pool: WorkerPool) -> None:
    samples = _samples(tmp_path, 5)
    batches = list(Batches(samples, ValTransform(300), 2, pool))
    assert [images.shape[0] for images, _ in batches] == [2, 2, 1]  # the last batch is kept
    labels = batches[0][1].asnumpy()  # samples 0 (no object) and 1 (one)
    assert labels.shape == (2, 1, 6)
    np.testing.assert_array_equal(labels[0], [[-1] * 6])
    np.testing.assert_allclose(labels[1, 0], [75, 60, 225, 240, 0, 0], rtol=1e-5)
    assert batches[1][1].shape == (2, 2, 6)


def test_undecodable_image_names_the_sample(tmp_path: Path, pool: WorkerPool) -> None:
    samples = _samples(tmp_path, 4)
    samples[3].image.write_bytes(corrupt_jpeg())
    with pytest.raises(ClientError) as caught:
        list(Batches(samples, ValTransform(300), 2, pool))
    assert str(caught.value) == ("train/3.jpg: image is a corrupt JPEG: its image data cannot "
                                 "be decoded (libjpeg-turbo: Could not determine subsampling "
                                 "level of JPEG image)")


def test_stopping_early_leaves_no_shared_memory(tmp_path: Path, pool: WorkerPool,
                                                monkeypatch) -> None:
    released = []

    def recording_release(memory):
        released.append(memory.name)
        batch_work.release(memory)
    monkeypatch.setattr(loader, "release", recording_release)
    batches = iter(Batches(_samples(tmp_path, 8), ValTransform(300), 1, pool))
    next(batches)
    time.sleep(1.0)  # the worker puts the prefetched batches in shared memory
    batches.close()
    assert len(released) == 2  # the batch used, and the one prefetched behind it
    assert not any(os.path.exists(f"/dev/shm/{name.lstrip('/')}") for name in released)
