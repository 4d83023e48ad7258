"""validate-data's checks spread over every CPU the container may use: a format reader's
per-example check (`FileChecker`, `RecordChecker`) applied in a pool of spawned processes, the
results handed back in the examples' order, so the reader's ordered bookkeeping (one annotation
per image, one name per class, the report's order) and hence the report are those of one
process. Training keeps `map`: its loader workers are busy with batches.

Examples are sent in chunks (one pickle per chunk, not per example) and at most a few chunks
per worker are in flight, so a RecordIO channel's payloads are never all in memory at once.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ssd_sagemaker.cgroups import read_cgroup_limits, usable_cpus
from ssd_sagemaker.errors import AlgorithmError

CHUNK = 64  # examples per task: ~30 ms of checks, so the pickling overhead stays small
IN_FLIGHT_PER_WORKER = 4


def pool_workers() -> int:
    """One worker per usable CPU (affinity, or the cgroup's CPU quota when lower)."""
    return usable_cpus(read_cgroup_limits())


def _apply(check: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [check(item) for item in chunk]


class ProcessMap:
    """An `OrderedMap` (data/formats/protocol.py) over `workers` processes; one process (the
    plain `map`) when `workers` <= 1. Use it in a `with` block: the pool starts on the first
    call and stops at the block's end."""

    def __init__(self, workers: int, chunk: int | None = None):
        self.workers, self.chunk = workers, chunk or CHUNK
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessMap:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __call__(self, check: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(items)
        first = list(itertools.islice(iterator, 2 * self.chunk))
        if self.workers <= 1 or len(first) < 2 * self.chunk:  # a few examples: not worth a pool
            yield from map(check, itertools.chain(first, iterator))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        pending: deque[Future] = deque()
        iterator = itertools.chain(first, iterator)
        chunks = iter(lambda: list(itertools.islice(iterator, self.chunk)), [])
        try:
            for chunk in chunks:
                pending.append(self._pool.submit(_apply, check, chunk))
                while len(pending) >= self.workers * IN_FLIGHT_PER_WORKER:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as error:
            raise AlgorithmError(
                f"a validate-data worker process died ({error}), e.g. killed when memory ran "
                f"out; run validate-data again, with more memory if it dies again") from None
