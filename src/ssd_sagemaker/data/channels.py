"""Turn the job's declared channels into annotated datasets (this slice: image + JSON in File
mode), refusing combinations the container cannot read with a message that says what to send."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from ssd_sagemaker.data.annotations import AnnotatedChannel, read_annotated_channel
from ssd_sagemaker.data.loader import AnnotatedImageDataset, training_loader, validation_loader
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

IMAGE_CONTENT_TYPES = frozenset({"application/x-image", "image/jpeg", "image/png", "image/jpg"})


@dataclass(frozen=True)
class Shard:
    """Which part of the data this worker reads (kvstore rank among workers)."""

    index: int = 0
    count: int = 1


@dataclass(frozen=True)
class TrainingData:
    """What the trainer needs from the data, whatever the channels' format: class names,
    image counts, and per-epoch batch iterables."""

    train: AnnotatedChannel
    validation: AnnotatedChannel | None

    @property
    def class_names(self) -> dict[int, str]:
        names = dict(self.validation.class_names) if self.validation else {}
        names.update(self.train.class_names)
        return names

    @property
    def num_train_images(self) -> int:
        return len(self.train.samples)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def train_batches(self, epoch: int, transform: Callable, batch_size: int) -> Iterable:
        """Batches (images, class targets, box targets) of one training epoch."""
        return training_loader(AnnotatedImageDataset(self.train.samples), transform, batch_size)

    def validation_batches(self, transform: Callable, batch_size: int) -> Iterable:
        """Batches (images, labels padded with -1 rows) covering the validation set once."""
        assert self.validation is not None
        return validation_loader(AnnotatedImageDataset(self.validation.samples), transform,
                                 batch_size)


def _read_split(paths: Paths, channels: Mapping[str, ChannelConfig], name: str,
                num_classes: int) -> AnnotatedChannel:
    config = channels[name]
    content_type = config.content_type.split(";")[0].strip().lower()
    if content_type not in IMAGE_CONTENT_TYPES:
        raise ClientError(
            f"Channel '{name}' has ContentType '{config.content_type}', which this version "
            f"cannot read yet; send images with JSON annotations "
            f"({', '.join(sorted(IMAGE_CONTENT_TYPES))})."
        )
    if config.input_mode != "File":
        raise ClientError(
            f"Channel '{name}' uses TrainingInputMode={config.input_mode}; image + JSON "
            f"channels need File mode."
        )
    annotation_name = f"{name}_annotation"
    if annotation_name not in channels:
        raise ClientError(
            f"Channel '{name}' holds images, so the '{annotation_name}' channel with one JSON "
            f"annotation per image is required; it is missing from the job's channels "
            f"({', '.join(sorted(channels))})."
        )
    return read_annotated_channel(paths.channel_dir(name), paths.channel_dir(annotation_name),
                                  num_classes)


def read_training_data(paths: Paths, channels: Mapping[str, ChannelConfig],
                       num_classes: int, shard: Shard = Shard()) -> TrainingData:
    """Read `train` (required) and `validation` (optional: without it there is no mAP)."""
    if "train" not in channels:
        raise ClientError(
            f"The 'train' channel is required; the job has: {', '.join(sorted(channels)) or 'none'}."
        )
    train = _read_split(paths, channels, "train", num_classes)
    validation = None
    if "validation" in channels:
        validation = _read_split(paths, channels, "validation", num_classes)
    else:
        LOG.warning("no 'validation' channel: no validation mAP, no early stopping; the last "
                    "epoch's model is exported")
    LOG.info("training images: %d; validation images: %d", len(train.samples),
             len(validation.samples) if validation else 0)
    return TrainingData(train=train, validation=validation)
