"""The epoch loop of one training run: a training pass in the run's precision, validation,
the early-stopping decision (agreed by every host of a distributed job), the best weights,
the per-epoch log and a checkpoint after every epoch (and on interruption)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluation import DetectionMAP, MeanAveragePrecision
from ssd_sagemaker.hyperparameters import Hyperparameters
from ssd_sagemaker.metrics import EpochLog, MetricReporter
from ssd_sagemaker.training.checkpoint import Checkpointer, CheckpointState
from ssd_sagemaker.training.distributed import DistributedJob
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.interruption import TrainingInterrupted, stop_signal
from ssd_sagemaker.training.loop import EpochResult, train_one_epoch, validate
from ssd_sagemaker.training.precision import MixedPrecision
from ssd_sagemaker.training.watchdog import Watchdog, progress_timeout

LOG = logging.getLogger(__name__)


def _is_out_of_memory(error: Exception) -> bool:
    text = str(error).lower()
    return "out of memory" in text or "cudamalloc" in text or "cudaerrormemoryallocation" in text


def _out_of_memory_error(hp: Hyperparameters, contexts: Sequence[mx.Context]) -> ClientError:
    return ClientError(
        f"Out of device memory training {hp.base_network} at image_shape={hp.image_shape} with "
        f"mini_batch_size={hp.mini_batch_size} on {len(contexts)} device(s) "
        f"({hp.mini_batch_size / len(contexts):g} images each). Lower mini_batch_size or "
        f"image_shape, or use an instance with more GPU memory."
    )


@dataclass
class EpochLoop:
    """Everything the loop touches, set up by `trainer.run_training`. `data` is the run's
    TrainingData; `validates` is False on workers other than the master; `gradient_divisor`
    is the number of dist_sync workers (1 otherwise); `optimizer_state` is False under
    dist_async, where the servers own it."""

    hp: Hyperparameters
    net: gluon.HybridBlock
    trainer: gluon.Trainer
    precision: MixedPrecision
    data: object
    train_transform: Callable
    val_transform: Callable
    contexts: Sequence[mx.Context]
    stopping: EarlyStopping
    checkpointer: Checkpointer
    network_id: dict
    history: list
    epoch_log: EpochLog | None
    reporter: MetricReporter
    job: DistributedJob | None = None
    validates: bool = True
    gradient_divisor: int = 1
    optimizer_state: bool = True
    should_stop: Callable[[], bool] | None = None
    watchdog: Watchdog | None = None

    def __post_init__(self):
        self.metric = DetectionMAP(iou_threshold=self.hp.overlap_threshold)
        if self.watchdog is None:
            pipe_mode = self.data.train.local_count is None  # a stream of unknown length
            self.watchdog = Watchdog(progress_timeout(pipe_mode), pipe_mode)

    def run(self, start_epoch: int) -> int:
        """Epochs from `start_epoch` until the last or an early stop; the epochs run in all."""
        epoch = start_epoch
        for epoch in range(start_epoch, self.hp.epochs):
            if self.should_stop is not None and self.should_stop():
                raise TrainingInterrupted(epoch, 0, stop_signal(self.should_stop))
            result = self._train(epoch)
            maps = self._validate(epoch, result)
            score = maps.voc07 if maps is not None else None
            stop = score is not None and self.stopping.update(epoch, score)
            if self.job is not None:  # every worker must stop in the same epoch, or dist_sync hangs
                stop = self.job.agree(f"stop_after_epoch_{epoch}", stop)
            if self.stopping.best_epoch == epoch:
                self.checkpointer.save_best(self.net)
            self._log(epoch, result, maps)
            self.reporter.progress(100.0 if stop else 100.0 * (epoch + 1) / self.hp.epochs)
            self.checkpoint(self.hp.epochs if stop else epoch + 1)
            if stop:
                break
        return epoch + 1 if self.hp.epochs > start_epoch else start_epoch

    def checkpoint(self, next_epoch: int, interrupted_in: int | None = None) -> None:
        self.checkpointer.save(self.net, self.trainer, CheckpointState(
            next_epoch=next_epoch, network=self.network_id,
            early_stopping=asdict(self.stopping), interrupted_in_epoch=interrupted_in,
            history=self.epoch_log.rows if self.epoch_log else self.history),
            optimizer_state=self.optimizer_state)

    def _train(self, epoch: int) -> EpochResult:
        batches = self.data.train_batches(epoch, self.train_transform, self.hp.mini_batch_size)
        try:
            with self.watchdog.watching(f"training epoch {epoch}") as beat:
                return train_one_epoch(self.net, batches, self.trainer, self.contexts, epoch,
                                       self.reporter, self.should_stop,
                                       gradient_divisor=self.gradient_divisor,
                                       precision=self.precision, on_batch=beat)
        except TrainingInterrupted:
            self.checkpoint(epoch, interrupted_in=epoch)
            raise
        except mx.base.MXNetError as error:
            if _is_out_of_memory(error):
                raise _out_of_memory_error(self.hp, self.contexts) from None
            raise

    def _validate(self, epoch: int, result: EpochResult) -> MeanAveragePrecision | None:
        """Report the epoch's throughput and losses, then validate: the epoch's mAPs, VOC07
        11-point (`validation:mAP`) and area (None without validation data, or on a host that
        does not validate)."""
        self.reporter.throughput(result.images_per_second)
        LOG.info("epoch %d: cross_entropy %.4f, smooth_l1 %.4f, %.2f images/s, %.1f s, lr %g",
                 epoch, result.cross_entropy, result.smooth_l1, result.images_per_second,
                 result.seconds, self.trainer.learning_rate)
        if not self.validates or not self.data.has_validation:
            return None
        with self.watchdog.watching(f"validation after epoch {epoch}") as beat:
            maps = validate(self.net, self.data.validation_batches(self.val_transform,
                                                                   self.hp.mini_batch_size),
                            self.contexts, self.metric, on_batch=beat)
        if not math.isfinite(maps.voc07):
            LOG.warning("epoch %d: mAP is undefined (no ground-truth boxes?); counted as 0", epoch)
            maps = MeanAveragePrecision(0.0, 0.0, maps.per_class_voc07, maps.per_class_area)
        LOG.info("epoch %d: validation mAP %.4f (VOC07 11-point), %.4f (area)", epoch,
                 maps.voc07, maps.area)
        self.reporter.validation_map(epoch, maps.voc07)
        return maps

    def _log(self, epoch: int, result: EpochResult, maps: MeanAveragePrecision | None) -> None:
        if self.epoch_log is None:
            return
        self.epoch_log.append({
            "epoch": epoch, "cross_entropy": result.cross_entropy,
            "smooth_l1": result.smooth_l1,
            "validation_map": maps.voc07 if maps is not None else None,
            "validation_map_area": maps.area if maps is not None else None,
            "learning_rate": self.trainer.learning_rate,
            "images_per_second": result.images_per_second, "seconds": result.seconds})
