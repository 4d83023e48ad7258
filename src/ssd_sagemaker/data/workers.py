"""What runs in the loader's worker processes: read a batch of samples' image bytes, decode,
transform (augment + SSD targets), and stack the batch, so the training process only turns
finished arrays into NDArrays.

Workers are started with `spawn` (a clean interpreter: forking a process that runs MXNet's and
OpenCV's thread pools can deadlock the child), import only NumPy, OpenCV and simplejpeg (this
module and what it imports never import MXNet), and run OpenCV single-threaded: parallelism
comes from the worker count.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ssd_sagemaker.data.images import BadImage, decode
from ssd_sagemaker.data.recordio import RecordIOFormatError, read_payload
from ssd_sagemaker.data.samples import RecordRef, Sample
from ssd_sagemaker.errors import ClientError

SHM_DIR = "/dev/shm"
# Shared memory is used only while /dev/shm has this many times a batch free (the prefetched
# batches of every worker live there at once).
SHM_HEADROOM = 8


def image_bytes(sample: Sample) -> bytes:
    if isinstance(sample.image, bytes):
        return sample.image
    if isinstance(sample.image, RecordRef):
        return read_payload(sample.image)
    return Path(sample.image).read_bytes()


def load(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(HWC RGB uint8 image, label rows [xmin, ymin, xmax, ymax, class, difficult] in
    pixels); an image that cannot be read or decoded is a ClientError naming the sample."""
    try:
        image = decode(image_bytes(sample))
    except (BadImage, RecordIOFormatError) as error:
        raise ClientError(f"{sample.origin}: image {error}") from None
    except OSError as error:
        raise ClientError(f"{sample.origin}: cannot read the image ({error.strerror})") from None
    height, width = image.shape[:2]
    return image, sample.label(width, height)


def _layout(outputs: Sequence[tuple[np.ndarray, ...]]) -> list[tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each stacked field (ragged fields padded to the longest, >= 1 row)."""
    layout = []
    for values in zip(*outputs):
        rows = values[0].shape[0]
        if len({value.shape for value in values}) > 1 or rows == 0:
            rows = max(1, max(value.shape[0] for value in values))
        layout.append(((len(values), rows) + values[0].shape[1:], values[0].dtype))
    return layout


def collate(outputs: Sequence[tuple[np.ndarray, ...]],
            fields: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
    """Stack each field of the transformed samples into `fields` (allocated when None);
    fields of varying length (validation labels) are padded with -1 rows."""
    if fields is None:
        fields = [np.empty(shape, dtype) for shape, dtype in _layout(outputs)]
    for field, values in zip(fields, zip(*outputs)):
        if all(value.shape == field.shape[1:] for value in values):
            np.stack(values, out=field)
            continue
        field[...] = -1
        for index, value in enumerate(values):
            field[index, :len(value)] = value
    return tuple(fields)


@dataclass(frozen=True)
class SharedBatch:
    """A batch left in shared memory by a worker: only this handle crosses the process
    boundary (pickling ~40 MB per batch of 32 through a pipe costs more than making it)."""

    name: str
    fields: tuple[tuple[tuple[int, ...], str, int], ...]  # shape, dtype, byte offset

    def attach(self) -> tuple[shared_memory.SharedMemory, tuple[np.ndarray, ...]]:
        """The block and views of its arrays; copy them out, then `release(block)`."""
        memory = shared_memory.SharedMemory(name=self.name)
        return memory, tuple(np.ndarray(shape, np.dtype(dtype), buffer=memory.buf, offset=offset)
                             for shape, dtype, offset in self.fields)


def release(memory: shared_memory.SharedMemory) -> None:
    memory.close()
    memory.unlink()


def _shm_room() -> int:
    try:
        stats = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize


def _shared_collate(outputs: Sequence[tuple[np.ndarray, ...]]) -> SharedBatch | tuple:
    """Collate straight into a new shared-memory block; the plain arrays (through the pipe)
    when /dev/shm lacks room: a full tmpfs kills with SIGBUS on write, it does not fail
    politely."""
    layout = _layout(outputs)
    sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in layout]
    if _shm_room() < SHM_HEADROOM * sum(sizes):
        return collate(outputs)
    memory = shared_memory.SharedMemory(create=True, size=max(1, sum(sizes)))
    # The main process unlinks the block; stop this process's tracker from doing it too.
    resource_tracker.unregister(memory._name, "shared_memory")  # noqa: SLF001
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    fields = [np.ndarray(shape, dtype, buffer=memory.buf, offset=offset)
              for (shape, dtype), offset in zip(layout, offsets)]
    collate(outputs, fields)
    del fields
    handle = SharedBatch(memory.name, tuple((shape, np.dtype(dtype).str, offset)
                                            for (shape, dtype), offset in zip(layout, offsets)))
    memory.close()
    return handle


def transform_batch(transform: Callable, samples: Sequence[Sample], seed: int,
                    shared: bool = False) -> SharedBatch | tuple[np.ndarray, ...]:
    """One batch: load and transform every sample (randomness from `seed`), then collate
    (into shared memory when `shared`: the worker-process path)."""
    rng = np.random.default_rng(seed)
    outputs = [transform(*load(sample), rng=rng) for sample in samples]
    return _shared_collate(outputs) if shared else collate(outputs)


def _initialise() -> None:
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle


class _Ready:
    """The result of a task run in the calling process (no workers)."""

    def __init__(self, function: Callable, args: tuple):
        self._function, self._args = function, args

    def get(self) -> Any:
        return self._function(*self._args)


class WorkerPool:
    """A pool of `workers` spawned processes (0: run tasks in the calling process)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = (multiprocessing.get_context("spawn").Pool(workers, initializer=_initialise)
                      if workers > 0 else None)

    def submit(self, function: Callable, *args: Any) -> Any:
        """A handle whose `get()` returns `function(*args)` (or raises its exception)."""
        if self._pool is None:
            return _Ready(function, args)
        return self._pool.apply_async(function, args)

    @property
    def running(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
