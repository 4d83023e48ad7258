"""Which samples a worker trains on, and how many per epoch.

With several workers (kvstore rank among hosts) each reads a disjoint shard, and every worker
must run the SAME number of batches per epoch: `dist_sync` waits for all workers at every
batch, so one worker finishing early hangs the others. Workers cannot agree on a count by
talking (the data is read before the kvstore exists), so the count comes from numbers every
worker knows alike:

- `FullyReplicated` in File mode: every worker sees the whole channel, takes samples
  `index, index + count, ...` and trains on ceil(total / count) samples per epoch;
- `ShardedByS3Key` (SageMaker already split the objects, workers see different counts) and any
  Pipe-mode channel (the count is unknown until the stream ends): ceil(num_training_samples /
  count) per epoch, the hyperparameter being the same on every worker. In Pipe mode with
  `FullyReplicated` each worker still keeps every count-th sample of the stream.

The per-epoch count is rounded up to whole batches. A worker with fewer samples than its count
repeats some (reshuffled); one with more trains on a random subset each epoch. On a single
worker every sample is used each epoch, the last batch completed with repeated samples (every
batch has the same shape: the hybridised network keeps one static graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

from ssd_sagemaker.errors import AlgorithmError

FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Which part of the data this worker reads (kvstore rank among workers)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise AlgorithmError(f"shard index {self.index} is not in [0, {self.count})")

    def owns(self, position: int) -> bool:
        """Whether the sample at `position` of a replicated sequence is this worker's."""
        return position % self.count == self.index


def split(items: Sequence[T], shard: Shard, distribution: str) -> list[T]:
    """This worker's part of a File-mode channel."""
    if distribution == SHARDED_BY_S3_KEY or shard.count == 1:
        return list(items)
    return list(items[shard.index::shard.count])


def whole_batches(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size) * batch_size


def samples_per_epoch(shard: Shard, distribution: str, batch_size: int, declared: int,
                      local: int | None, total: int | None) -> int | None:
    """Samples this worker trains on per epoch (see the module docstring). `local`: samples
    in its shard, `total`: in the whole channel (None when unknown: Pipe mode); `declared`:
    num_training_samples. None: read the stream to its end (one worker, Pipe mode)."""
    if shard.count == 1:
        return None if local is None else whole_batches(local, batch_size)
    if distribution == FULLY_REPLICATED and total is not None:
        return whole_batches(math.ceil(total / shard.count), batch_size)
    return whole_batches(math.ceil(declared / shard.count), batch_size)
