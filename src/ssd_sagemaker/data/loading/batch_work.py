"""What a loader worker does for one batch: read each sample's image bytes, decode, transform
(augment + SSD targets) and stack the batch, into shared memory when /dev/shm has room, so the
training process only turns finished arrays into NDArrays. The same functions run in the
training process when there are no workers (`WorkerPool(0)`).

Training checks images here, as they are used, not all before the first batch (the decode
checks everything the up-front inspection did): an image that cannot be used is refused and
handed back by name with the batch, whose slot another image of the batch fills (training
batches stay full: every host runs as many) or which is left out (validation), and the training
process counts it against the channel's tolerance (`refusals.py`).

This module and what it imports never import MXNet: workers load only NumPy, OpenCV and
simplejpeg (`worker_pool.py` starts them)."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from ssd_sagemaker.data.checks.images import BadImage, decode
from ssd_sagemaker.data.checks.samples import RecordRef, Sample
from ssd_sagemaker.data.formats.recordio import RecordIOFormatError, read_payload
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_files import RefusedFile, read_file

SHM_DIR = "/dev/shm"
SHM_PREFIX = "ssd_batch_"
# Shared memory is used only while /dev/shm has this many times a batch free (the prefetched
# batches of every worker live there at once).
SHM_HEADROOM = 8


def image_bytes(sample: Sample) -> bytes:
    if isinstance(sample.image, bytes):
        return sample.image
    if isinstance(sample.image, RecordRef):
        return read_payload(sample.image)
    return read_file(Path(sample.image))  # a file swapped for a FIFO since listing: no hang


class BadSample(ClientError):
    """A sample whose image cannot be read or decoded; `problem` says why."""

    def __init__(self, origin: str, problem: str):
        super().__init__(f"{origin}: {problem}")
        self.origin, self.problem = origin, problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in workers, re-raised here
        return BadSample, (self.origin, self.problem)


def load(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(HWC RGB uint8 image, label rows [xmin, ymin, xmax, ymax, class, difficult] in
    pixels); an image that cannot be read or decoded is a BadSample naming the sample."""
    try:
        image = decode(image_bytes(sample))
    except (BadImage, RecordIOFormatError, RefusedFile) as error:
        raise BadSample(sample.origin, f"image {error}") from None
    except OSError as error:
        raise BadSample(sample.origin, f"cannot read the image ({error.strerror})") from None
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


def _block_name(parent: int, worker: int) -> str:
    """A shared-memory block's name, prefixed by the job's and the worker's pid so the blocks
    of a worker that died (or of a pool closed early) can be found and freed."""
    return f"{SHM_PREFIX}{parent}_{worker}_{secrets.token_hex(6)}"


def free_blocks(parent: int, worker: int | str = "") -> int:
    """Unlink the blocks made for process `parent` (by `worker` only, when given) that are
    still in /dev/shm; how many."""
    freed = 0
    for path in Path(SHM_DIR).glob(f"{SHM_PREFIX}{parent}_{worker}{'_' if worker else ''}*"):
        with contextlib.suppress(OSError):
            release(shared_memory.SharedMemory(name=path.name))
            freed += 1
    return freed


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
    memory = shared_memory.SharedMemory(name=_block_name(os.getppid(), os.getpid()),
                                        create=True, size=max(1, sum(sizes)))
    # The block stays registered with the job's resource tracker (spawned workers share the
    # training process's) until the training process unlinks it: if the job dies abruptly,
    # the tracker frees it.
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    fields: list[np.ndarray] = [np.ndarray(shape, dtype, buffer=memory.buf, offset=offset)
              for (shape, dtype), offset in zip(layout, offsets)]
    collate(outputs, fields)
    del fields
    handle = SharedBatch(memory.name, tuple((shape, np.dtype(dtype).str, offset)
                                            for (shape, dtype), offset in zip(layout, offsets)))
    memory.close()
    return handle


# What a batch does with a sample whose image cannot be used: stop (raise its BadSample), fill
# its slot with another image of the batch (training), or leave it out (validation).
RAISE, REPEAT, DROP = "raise", "repeat", "drop"


@dataclass(frozen=True)
class LoadedBatch:
    """A batch's arrays (None: no image of it could be used, and it was to DROP them) and the
    samples refused while making it, as (origin, problem)."""

    arrays: SharedBatch | tuple[np.ndarray, ...] | None
    refused: tuple[tuple[str, str], ...] = ()


def transform_batch(transform: Callable, samples: Sequence[Sample], seed: int,
                    shared: bool = False, bad_images: str = RAISE) -> LoadedBatch:
    """One batch: load and transform every sample (randomness from `seed`), then collate
    (into shared memory when `shared`: the worker-process path); `bad_images` (RAISE, REPEAT,
    DROP) says what an image that cannot be used does. A refused slot REPEATs another
    sample's transformed output (decoded images are not kept: they may be large)."""
    rng = np.random.default_rng(seed)
    outputs: list[tuple[np.ndarray, ...] | None] = []
    refused: list[BadSample] = []
    for sample in samples:
        try:
            outputs.append(transform(*load(sample), rng=rng))
        except BadSample as bad:
            if bad_images == RAISE:
                raise
            refused.append(bad)
            outputs.append(None)
    usable = [output for output in outputs if output is not None]
    if bad_images == REPEAT and refused and not usable:
        raise ClientError(
            f"No image of a batch of {len(samples)} could be used, so the batch cannot be "
            f"completed: " + "; ".join(str(bad) for bad in refused)
            + ". Fix or remove these images (validate-data lists every fault).")
    if bad_images == REPEAT:
        spares = itertools.cycle(usable)
        usable = [output if output is not None else next(spares) for output in outputs]
    arrays = (None if not usable else _shared_collate(usable) if shared
              else collate(usable))
    return LoadedBatch(arrays, tuple((bad.origin, bad.problem) for bad in refused))
