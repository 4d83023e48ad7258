"""Batches for the trainer: samples are grouped into batches, each batch decoded, augmented and
encoded in a worker process (`batch_work.py` run by `worker_pool.py`), a bounded number of
batches prefetched ahead of the training step, and the finished arrays handed over as
NDArrays."""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading.batch_work import (
    DROP,
    RAISE,
    REPEAT,
    LoadedBatch,
    SharedBatch,
    release,
    transform_batch,
)
from ssd_sagemaker.data.loading.refusals import Refusals
from ssd_sagemaker.data.loading.worker_pool import WorkerPool

if TYPE_CHECKING:
    import mxnet as mx

MAX_WORKERS = 16
BATCHES_AHEAD_PER_WORKER = 2
DISCARD_TIMEOUT = 30.0


def loader_workers(cpus: int | None = None) -> int:
    """Worker processes: one per CPU, leaving one to the training process."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return max(1, min(MAX_WORKERS, cpus - 1))


def _seed(seed: tuple[int, ...], batch: int) -> int:
    return int(np.random.SeedSequence([*seed, batch]).generate_state(1)[0])


def _ndarrays(result: SharedBatch | tuple[np.ndarray, ...]) -> tuple[mx.nd.NDArray, ...]:
    """A worker's batch as NDArrays (copied out of shared memory, which is then freed).
    MXNet is imported here, not with the module: validate-data reads channels through this
    package and never makes a batch (importing MXNet cost it over a second of one core)."""
    import mxnet as mx
    if not isinstance(result, SharedBatch):
        return tuple(mx.nd.array(array, dtype=array.dtype) for array in result)
    memory, arrays = result.attach()
    try:
        return tuple(mx.nd.array(array, dtype=array.dtype) for array in arrays)
    finally:
        del arrays
        release(memory)


def _discard(pending: collections.deque, pool: WorkerPool) -> None:
    """Free the shared memory of batches prefetched but not used (iteration ended early)."""
    if not pool.running:
        return  # the pool is gone (and freed its blocks), or the batches were never made
    for handle in pending:
        try:
            result = handle.get(timeout=DISCARD_TIMEOUT)
        except Exception:  # noqa: BLE001 - the batch is dropped anyway
            continue
        if isinstance(result.arrays, SharedBatch):
            release(result.arrays.attach()[0])


class Batches:
    """One pass of batches: iterating yields tuples of NDArrays (images B x 3 x S x S, then
    the transform's other outputs, stacked). `seed` makes the augmentation reproducible.
    Without `refusals` an image that cannot be used stops the pass (its ClientError); with
    them it is counted there and its slot filled by another image of the batch (`full`:
    training batches) or left out."""

    def __init__(self, samples: Iterable[Sample], transform: Callable, batch_size: int,
                 pool: WorkerPool, seed: tuple[int, ...] = (0,),
                 refusals: Refusals | None = None, full: bool = False):
        self._samples = samples
        self._transform = transform
        self._batch_size = batch_size
        self._pool = pool
        self._seed = seed
        self._refusals = refusals
        self._bad_images = RAISE if refusals is None else REPEAT if full else DROP

    def _arrays(self, result: LoadedBatch) -> tuple[mx.nd.NDArray, ...] | None:
        """The batch's NDArrays (None: nothing left of it), its refusals counted."""
        if self._refusals is not None and result.refused:
            try:
                self._refusals.add(result.refused)
            except Exception:
                if isinstance(result.arrays, SharedBatch):
                    release(result.arrays.attach()[0])
                raise
        return None if result.arrays is None else _ndarrays(result.arrays)

    def __iter__(self) -> Iterator[tuple[mx.nd.NDArray, ...]]:
        samples = iter(self._samples)
        ahead = BATCHES_AHEAD_PER_WORKER * max(1, self._pool.workers)
        pending: collections.deque = collections.deque()
        try:
            for index in itertools.count():
                # Read by the progress watchdog if the job stalls here (training/watchdog.py).
                waiting_for = "the next samples from the data channel"  # noqa: F841
                chunk = list(itertools.islice(samples, self._batch_size))
                if chunk:
                    pending.append(self._pool.submit(transform_batch, self._transform, chunk,
                                                     _seed(self._seed, index),
                                                     self._pool.workers > 0, self._bad_images))
                if pending and (len(pending) >= ahead or not chunk):
                    arrays = self._arrays(pending.popleft().get())
                    if arrays is not None:
                        yield arrays
                if not chunk and not pending:
                    if self._refusals is not None:
                        self._refusals.pass_done()
                    return
        except Exception:
            # The pass failed (a stall, a dead worker, a bad image): the job is ending, and
            # closing the pool frees what was prefetched; do not wait for it here.
            pending.clear()
            raise
        finally:
            _discard(pending, self._pool)


class CountedBatches(Batches):
    """Batches whose number is known in advance (the trainer shows progress and an eta)."""

    def __init__(self, samples: Iterable[Sample], transform: Callable, batch_size: int,
                 pool: WorkerPool, num_batches: int, seed: tuple[int, ...] = (0,),
                 refusals: Refusals | None = None):
        super().__init__(samples, transform, batch_size, pool, seed, refusals, full=True)
        self._num_batches = num_batches

    def __len__(self) -> int:
        return self._num_batches
