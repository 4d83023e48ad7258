"""Datasets and batch loaders feeding the trainer: decode images, apply a transform, batch."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Pad, Stack, Tuple
from mxnet import gluon

from ssd_sagemaker.data.annotations import Sample
from ssd_sagemaker.errors import ClientError


class AnnotatedImageDataset(gluon.data.Dataset):
    """Samples of an image + JSON channel as (HWC RGB uint8 image, label) pairs, the label
    GluonCV's layout: one row [xmin, ymin, xmax, ymax, class_id] per object, in pixels."""

    def __init__(self, samples: Sequence[Sample]):
        self._samples = tuple(samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> tuple[mx.nd.NDArray, np.ndarray]:
        sample = self._samples[index]
        try:
            image = mx.image.imread(str(sample.image_path), flag=1)
        except mx.base.MXNetError as error:
            raise ClientError(f"Cannot decode image {sample.image_path}: {error}") from None
        boxes = sample.boxes.astype(np.float32)
        height, width = image.shape[:2]
        if (width, height) != (sample.width, sample.height) and sample.width and sample.height:
            # Annotations are in the annotated size's pixels: map them onto the decoded image.
            boxes = boxes * np.array([width / sample.width, height / sample.height] * 2,
                                     dtype=np.float32)
        label = np.hstack([boxes, sample.class_ids.reshape(-1, 1).astype(np.float32)])
        return image, label


def loader_workers() -> int:
    """Decode/augment in worker processes, leaving a core to the training step."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def training_loader(dataset: gluon.data.Dataset, transform: Callable, batch_size: int,
                    num_workers: int | None = None) -> gluon.data.DataLoader:
    """Shuffled batches of (image, class targets, box targets); the last partial batch rolls
    over into the next epoch so every step has the same shape (static graph)."""
    return gluon.data.DataLoader(
        dataset.transform(transform), batch_size, shuffle=True,
        batchify_fn=Tuple(Stack(), Stack(), Stack()), last_batch="rollover",
        num_workers=loader_workers() if num_workers is None else num_workers)


def validation_loader(dataset: gluon.data.Dataset, transform: Callable, batch_size: int,
                      num_workers: int | None = None) -> gluon.data.DataLoader:
    """Batches of (image, padded labels) covering every validation image once."""
    return gluon.data.DataLoader(
        dataset.transform(transform), batch_size, shuffle=False,
        batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), last_batch="keep",
        num_workers=loader_workers() if num_workers is None else num_workers)
