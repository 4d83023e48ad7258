"""Pipe mode: SageMaker streams a channel through a FIFO `input/data/<channel>_<n>` for the n-th
pass over the data (`train_0`, `train_1`, ...), each created once the previous one is done, so
the next may not exist yet (we wait). Each is read to its end, or closed early once the epoch
has its samples.

A `PipeSource` turns those passes into samples: the first pass is opened at start-up and its
first samples are read at once (a wrong format fails the job before the network is built, and
class names are known), this worker's share is kept (`keep`), samples are shuffled through a
bounded buffer, and each epoch gets the count `sharding.py` decided, repeating samples from a
bounded reservoir when the stream runs short.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.formats.protocol import Parser
from ssd_sagemaker.data.loading.refusals import Refusals
from ssd_sagemaker.data.loading.sharding import whole_batches
from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

WAIT_SECONDS = 600.0
POLL_SECONDS = 0.1
READ_BUFFER = 1 << 20
SHUFFLE_BUFFER = 256
RESERVOIR = 256
PEEK = 32


class PipeChannel:
    """The FIFOs of one Pipe-mode channel, one per pass."""

    def __init__(self, data_dir: Path, channel: str, wait_seconds: float = WAIT_SECONDS):
        self.data_dir = Path(data_dir)
        self.channel = channel
        self.wait_seconds = wait_seconds
        self.passes = 0

    def open_next(self) -> tuple[str, BinaryIO]:
        """The next pass's FIFO, opened for reading (blocks until SageMaker writes to it)."""
        name = f"{self.channel}_{self.passes}"
        path = self.data_dir / name
        deadline = time.monotonic() + self.wait_seconds
        while not path.exists():
            if time.monotonic() > deadline:
                raise ClientError(
                    f"The Pipe-mode channel '{self.channel}' has no FIFO {path} after "
                    f"{self.wait_seconds:.0f} s (SageMaker creates {self.channel}_0, "
                    f"{self.channel}_1, ... one per pass); check the channel's "
                    f"TrainingInputMode, or use File mode.")
            time.sleep(POLL_SECONDS)
        self.passes += 1
        # Read by the progress watchdog if the job stalls here (training/watchdog.py).
        waiting_for = f"SageMaker to open the FIFO {path} for writing"  # noqa: F841
        return name, open(path, "rb", buffering=READ_BUFFER)


@dataclass
class _Pass:
    name: str
    stream: BinaryIO
    report: ChannelReport
    samples: Iterator[Sample]
    peeked: list[Sample] = field(default_factory=list)


def _shuffled(samples: Iterator[Sample], size: int,
              rng: np.random.Generator) -> Iterator[Sample]:
    buffer: list[Sample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        slot = int(rng.integers(size))
        yield buffer[slot]
        buffer[slot] = sample
    rng.shuffle(buffer)  # type: ignore[arg-type]  # numpy's stubs omit lists; it shuffles them
    yield from buffer


class PipeSource:
    """Samples of a Pipe-mode channel, pass by pass (see the module docstring)."""

    def __init__(self, fifo: PipeChannel, kind: str, parse: Parser, declared: int,
                 keep: Callable[[int], bool] = lambda index: True):
        self.channel = fifo.channel
        self.refusals: Refusals | None = None  # every streamed example is checked as read
        self.fifo = fifo
        self.kind = kind
        self.parse = parse
        self.keep = keep
        self._declared = declared
        self._names: dict[int, str] = {}
        # called once with (stream, samples) when a training pass was read to its end
        self.on_counted: Callable[[str, int], None] | None = None
        self._counted = False
        self._pending: _Pass | None = self._peek()

    def _start(self) -> _Pass:
        name, stream = self.fifo.open_next()
        report = ChannelReport(self.channel, self.kind)
        samples = self.parse(stream, name, report, self._names, self.keep)
        return _Pass(name, stream, report, samples)

    def _peek(self) -> _Pass:
        """Read the first samples now: a wrong format or wrong labels stop the job at once."""
        started = self._start()
        waiting_for = f"the first samples from the FIFO {started.name}"  # noqa: F841 (watchdog)
        started.peeked = list(itertools.islice(started.samples, PEEK))
        if not started.peeked or started.report.too_many_errors():
            started.stream.close()
            started.report.log()
            started.report.check()
            raise ClientError(f"The Pipe-mode channel '{self.channel}' sent no usable sample "
                              f"in {started.name}; {started.report.summary()}.")
        LOG.info("%s: Pipe mode, first %d samples read and checked", self.channel,
                 len(started.peeked))
        return started

    def _next_pass(self) -> _Pass:
        if self._pending is not None:
            started, self._pending = self._pending, None
            return started
        return self._start()

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self._names)

    @property
    def num_images(self) -> int:
        return self._declared

    @property
    def local_count(self) -> None:
        return None

    @property
    def total_count(self) -> None:
        return None

    def _finish(self, current: _Pass) -> None:
        current.stream.close()
        current.report.log()
        current.report.check()

    def training_pass(self, count: int | None, batch_size: int,
                      rng: np.random.Generator) -> Iterator[Sample]:
        current = self._next_pass()
        reservoir: list[Sample] = []
        seen = 0
        try:
            for sample in _shuffled(itertools.chain(current.peeked, current.samples),
                                    SHUFFLE_BUFFER, rng):
                yield sample
                if len(reservoir) < RESERVOIR:
                    reservoir.append(sample)
                elif (slot := int(rng.integers(seen + 1))) < RESERVOIR:
                    reservoir[slot] = sample
                seen += 1
                if count is not None and seen >= count:
                    break
        finally:
            current.stream.close()
        self._finish(current)
        if (count is None or seen < count) and not self._counted:  # the stream's end was read
            self._counted = True
            if self.on_counted is not None:
                self.on_counted(current.name, seen)
        target = count if count is not None else whole_batches(seen, batch_size)
        if seen < target:
            if not reservoir:
                raise ClientError(f"{current.name} held no usable sample; "
                                  f"{current.report.summary()}.")
            if count is not None:
                LOG.warning("%s: the stream held %d samples for this worker, %d are needed per "
                            "epoch (num_training_samples / workers); repeating %d", current.name,
                            seen, count, target - seen)
            for index in rng.integers(len(reservoir), size=target - seen):
                yield reservoir[int(index)]

    def validation_pass(self) -> Iterator[Sample]:
        current = self._next_pass()
        try:
            yield from current.peeked
            yield from current.samples
        finally:
            current.stream.close()
        self._finish(current)
