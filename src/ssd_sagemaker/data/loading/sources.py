"""Where a split's samples come from, behind one small protocol, so `TrainingData` treats every
format and input mode alike: a File-mode channel is a `SampleList` held in memory (samples are
light: a path or a record offset, and a few boxes); a Pipe-mode channel is a `PipeSource`
(`pipe.py`) reading a new FIFO each pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading.refusals import Refusals
from ssd_sagemaker.errors import ClientError


class Source(Protocol):
    channel: str
    # where images refused while loading are counted (File mode), None when every example
    # was checked as it was read (Pipe mode)
    refusals: Refusals | None

    @property
    def class_names(self) -> dict[int, str]: ...

    @property
    def num_images(self) -> int:
        """The channel's image count as the trainer should see it (declared in Pipe mode)."""

    @property
    def local_count(self) -> int | None:
        """Samples in this worker's shard, None when unknown before reading (Pipe mode)."""

    @property
    def total_count(self) -> int | None:
        """Samples in the whole channel, None when unknown (Pipe mode, ShardedByS3Key)."""

    def training_pass(self, count: int | None, batch_size: int,
                      rng: np.random.Generator) -> Iterator[Sample]:
        """One shuffled epoch of exactly `count` samples (None: all of them, completed to a
        whole number of batches)."""

    def validation_pass(self) -> Iterator[Sample]:
        """Every sample once, in order."""


class SampleList:
    """A File-mode channel: this worker's samples, in memory."""

    def __init__(self, channel: str, samples: Sequence[Sample], class_names: dict[int, str],
                 total: int | None, declared: int = 0, refusals: Refusals | None = None):
        self.channel = channel
        self.refusals = refusals
        self.samples = tuple(samples)
        self._class_names = dict(class_names)
        self._total = total
        self._declared = declared  # num_training_samples: the size of a channel not all seen
        if not self.samples:
            raise ClientError(f"The {channel} channel has no usable sample for this worker; "
                              f"add images (or use fewer instances than samples).")

    @property
    def class_names(self) -> dict[int, str]:
        return self._class_names

    @property
    def num_images(self) -> int:
        return self._total if self._total is not None else self._declared

    @property
    def local_count(self) -> int:
        return len(self.samples)

    @property
    def total_count(self) -> int | None:
        return self._total

    def training_pass(self, count: int | None, batch_size: int,
                      rng: np.random.Generator) -> Iterator[Sample]:
        count = count if count is not None else len(self.samples)
        order: list[int] = []
        while len(order) < count:  # reshuffled repeats when the epoch needs more samples
            order.extend(rng.permutation(len(self.samples)).tolist())
        return iter([self.samples[i] for i in order[:count]])

    def validation_pass(self) -> Iterator[Sample]:
        return iter(self.samples)
