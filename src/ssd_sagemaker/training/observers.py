"""What watches a training pass, one concern each, called after every finished batch (as
mmengine's hooks and Ultralytics' callbacks observe their loops): the divergence guard, the
progress display (a tqdm bar for a person at a terminal, periodic log lines for a collected
log), the metric lines SageMaker scrapes, the watchdog's heartbeat and stop polling. The step
itself (`loop.train_step`) knows none of them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.training.interruption import TrainingInterrupted, stop_signal

LOG = logging.getLogger("ssd_sagemaker.training.loop")  # the pass's lines, under one name


@dataclass(frozen=True)
class BatchDone:
    """The state of a pass after one finished batch: running mean losses over the epoch so far,
    images seen, seconds since the pass began; `batches` is 0 for a stream of unknown length."""

    epoch: int
    batch_index: int
    batches: int
    images: int
    seconds: float
    cross_entropy: float
    smooth_l1: float
    learning_rate: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def is_last(self) -> bool:
        return self.batch_index + 1 == self.batches


class EpochObserver:
    """Called after each finished batch, and once when the pass ends (however it ends)."""

    def after_batch(self, done: BatchDone) -> None:
        """Observe one finished batch; may raise to end the pass."""

    def close(self) -> None:
        """The pass has ended."""


class DivergenceGuard(EpochObserver):
    """A loss that is not finite ends the job with advice, instead of training on NaN."""

    def after_batch(self, done: BatchDone) -> None:
        if not (math.isfinite(done.cross_entropy) and math.isfinite(done.smooth_l1)):
            raise ClientError(
                f"Training diverged in epoch {done.epoch}, batch {done.batch_index}: the loss is "
                f"not finite (cross_entropy={done.cross_entropy}, smooth_l1={done.smooth_l1}). "
                f"Lower learning_rate (now {done.learning_rate:g}).")


def log_interval(batches: int) -> int:
    """About ten reports per epoch, at least every 50 batches (every batch of a short pass)."""
    return max(1, min(50, batches // 10))


class MetricLines(EpochObserver):
    """The `train cross_entropy` / `train smooth_l1` lines every `interval` batches and at the
    end of the pass."""

    def __init__(self, reporter: MetricReporter, interval: int):
        self.reporter, self.interval = reporter, interval

    def after_batch(self, done: BatchDone) -> None:
        if (done.batch_index + 1) % self.interval == 0 or done.is_last:
            self.reporter.train_losses(done.epoch, done.batch_index, done.cross_entropy,
                                       done.smooth_l1)


class ProgressBar(EpochObserver):
    """A tqdm bar on stderr with the running losses and images/s (metric lines are written
    through it: `MetricReporter` uses `tqdm.write`)."""

    def __init__(self, epoch: int, batches: int):
        self.bar = tqdm(total=batches or None, desc=f"epoch {epoch}", unit="batch", leave=False)

    def after_batch(self, done: BatchDone) -> None:
        self.bar.set_postfix_str(f"loss {done.cross_entropy:.3f}+{done.smooth_l1:.3f}, "
                                 f"{done.images_per_second:.2f} img/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class ProgressLines(EpochObserver):
    """A log line every `interval` batches: batch, images/s, eta (a Pipe-mode stream has no
    known length: "batch 7/?", eta unknown)."""

    def __init__(self, interval: int):
        self.interval = interval

    def after_batch(self, done: BatchDone) -> None:
        if (done.batch_index + 1) % self.interval and not done.is_last:
            return
        remaining = done.seconds / (done.batch_index + 1) * (done.batches - done.batch_index - 1)
        eta = f"{remaining:.0f} s" if done.batches else "unknown"
        LOG.info("epoch %d batch %d/%s: %.2f images/s, eta %s", done.epoch, done.batch_index + 1,
                 done.batches or "?", done.images_per_second, eta)


class Heartbeat(EpochObserver):
    """Tells the progress watchdog that a batch finished."""

    def __init__(self, beat: Callable[[], None]):
        self.beat = beat

    def after_batch(self, done: BatchDone) -> None:
        self.beat()


class StopPolling(EpochObserver):
    """Ends the pass at the first batch boundary after a stop was requested (SIGTERM,
    Ctrl-C), so the caller saves a checkpoint."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def after_batch(self, done: BatchDone) -> None:
        if self.should_stop():
            raise TrainingInterrupted(done.epoch, done.batch_index + 1,
                                      stop_signal(self.should_stop))


def standard_observers(epoch: int, batches: int, reporter: MetricReporter,
                       should_stop: Callable[[], bool] | None = None,
                       on_batch: Callable[[], None] | None = None,
                       draw_bar: bool = False) -> list[EpochObserver]:
    """The observers of a training pass, in the order they act on each batch."""
    interval = log_interval(batches)
    observers: list[EpochObserver] = [
        DivergenceGuard(), ProgressBar(epoch, batches) if draw_bar else ProgressLines(interval)]
    if on_batch is not None:
        observers.append(Heartbeat(on_batch))
    observers.append(MetricLines(reporter, interval))
    if should_stop is not None:
        observers.append(StopPolling(should_stop))
    return observers
