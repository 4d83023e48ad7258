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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ssd_sagemaker.environment import FULLY_REPLICATED, SHARDED_BY_S3_KEY
from ssd_sagemaker.errors import AlgorithmError

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


class SharePositions:
    """Counts a FullyReplicated channel's samples in file order as a format reads them and says
    which are this host's (`Shard.owns`), so that a host checks only its share (and, where an
    index gives the records' places, reads only its share) and knows the channel's size."""

    def __init__(self, shard: Shard):
        self.shard, self.seen = shard, 0

    def take(self) -> bool:
        """Whether the next sample is this host's."""
        self.seen += 1
        return self.shard.owns(self.seen - 1)


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


def _named(origins: Sequence[str], shown: int = 3) -> str:
    more = f", ... {origins[-1]}" if len(origins) > shown else ""
    return ", ".join(origins[:shown]) + more


def shard_lines(origins: Sequence[str], hosts: int, distribution: str, batch_size: int,
                declared: int) -> list[str]:
    """What each host of a `hosts`-host job reads of a training channel whose usable samples
    on this host are `origins` (validate-data shows it, since the summary counts the whole
    local channel). A host's shard index is its kvstore rank, known only once the job runs."""
    if distribution == SHARDED_BY_S3_KEY:
        per_epoch = samples_per_epoch(Shard(0, hosts), distribution, batch_size, declared,
                                      len(origins), None)
        return [f"this host's objects (ShardedByS3Key, one of {hosts} hosts): {len(origins)} "
                f"samples: {_named(origins)}",
                f"every host trains on {per_epoch} samples per epoch (ceil(num_training_samples"
                f"={declared} / {hosts} hosts) in whole batches of {batch_size}; a shard with "
                f"fewer repeats some)"]
    lines = [f"each of the {hosts} hosts takes one sample in {hosts} (FullyReplicated; in Pipe "
             f"mode one record in {hosts} of the stream); the shard index is the host's rank, "
             f"assigned when the job starts:"]
    for index in range(hosts):
        part = list(origins[index::hosts])
        lines.append(f"shard {index}: {len(part)} samples (indices {index}, {index + hosts}, "
                     f"...): {_named(part)}")
    per_epoch = samples_per_epoch(Shard(0, hosts), distribution, batch_size, declared,
                                  None, len(origins))
    lines.append(f"every host trains on {per_epoch} samples per epoch (ceil({len(origins)} / "
                 f"{hosts}) in whole batches of {batch_size})")
    return lines
