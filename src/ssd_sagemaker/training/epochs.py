"""The epoch loop of one training run: a training pass in the run's precision, validation,
the early-stopping decision (agreed by every host of a distributed job), the best weights,
a checkpoint after every epoch (and on interruption), then the per-epoch metrics files."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mxnet as mx

from ssd_sagemaker.data.channels import TrainingData
from ssd_sagemaker.environment import TrainingSettings
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluation import DetectionMAP, MeanAveragePrecision
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.progress import draws_bar
from ssd_sagemaker.training.distributed import DistributedJob
from ssd_sagemaker.training.interruption import TrainingInterrupted, stop_signal
from ssd_sagemaker.training.loop import EpochResult, Learner, train_one_epoch, validate
from ssd_sagemaker.training.state import TrainingState
from ssd_sagemaker.training.tensorboard import TensorBoardLog
from ssd_sagemaker.training.watchdog import Watchdog, progress_timeout

LOG = logging.getLogger(__name__)


def _is_out_of_memory(error: Exception) -> bool:
    text = str(error).lower()
    return "out of memory" in text or "cudamalloc" in text or "cudaerrormemoryallocation" in text


def _out_of_memory_error(network: NetworkIdentity, batch_size: int,
                         contexts: Sequence[mx.Context]) -> ClientError:
    return ClientError(
        f"Out of device memory training {network.base_network} at "
        f"image_shape={network.image_shape} with mini_batch_size={batch_size} on "
        f"{len(contexts)} device(s) ({batch_size / len(contexts):g} images each). Lower "
        f"mini_batch_size or image_shape, or use an instance with more GPU memory."
    )


@dataclass(frozen=True)
class RunPlan:
    """Which epochs this host runs: from `start_epoch` (0, or where a checkpoint left off)
    to before `epochs`, in batches of `batch_size`; `validates` is False on workers other than
    the master, and a detection counts as found at `overlap_threshold` (IoU) in validation;
    `settings`: the job's progress output and watchdog limit, read at start."""

    start_epoch: int
    epochs: int
    batch_size: int
    overlap_threshold: float = 0.5
    validates: bool = True
    settings: TrainingSettings = TrainingSettings()


class EpochLoop:
    """The epochs of one run (set up by `trainer.run_training`, after resuming `state`, whose
    `network` names what is trained)."""

    def __init__(self, learner: Learner, data: TrainingData,
                 transforms: tuple[Callable, Callable], plan: RunPlan, state: TrainingState,
                 reporter: MetricReporter, job: DistributedJob | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 tensorboard: TensorBoardLog | None = None):
        self.learner, self.data, self.plan, self.state = learner, data, plan, state
        self.train_transform, self.val_transform = transforms
        self.reporter, self.job, self.should_stop = reporter, job, should_stop
        self.tensorboard = tensorboard
        pipe_mode = data.train.local_count is None  # a stream of unknown length
        self.watchdog = Watchdog(progress_timeout(pipe_mode, plan.settings), pipe_mode)
        self.draw_bar = draws_bar(plan.settings)
        self.metric = DetectionMAP(iou_threshold=plan.overlap_threshold)

    def run(self) -> int:
        """Epochs from the plan's start until its end or an early stop; the epochs run in all.
        Each epoch is checkpointed before its metrics files are written."""
        start, end, epoch_log = self.plan.start_epoch, self.plan.epochs, self.state.epoch_log
        if start > 0 and epoch_log.rows:  # files lost after the last checkpoint come back
            epoch_log.write()
        epoch = start
        for epoch in range(start, end):
            if self.should_stop is not None and self.should_stop():
                raise TrainingInterrupted(epoch, 0, stop_signal(self.should_stop))
            result = self._train(epoch)
            maps = self._validate(epoch, result)
            score = maps.voc07 if maps is not None else None
            stop = score is not None and self.state.stopping.update(epoch, score)
            if self.job is not None:  # every worker must stop in the same epoch, or dist_sync hangs
                stop = self.job.agree(f"stop_after_epoch_{epoch}", stop)
            if self.state.stopping.best_epoch == epoch:
                self.state.checkpointer.save_best(self.learner.net)
            row = self._row(epoch, result, maps)
            epoch_log.record(row)
            if self.tensorboard is not None:
                self._tensorboard(row, maps is not None)
            self.reporter.progress(100.0 if stop else 100.0 * (epoch + 1) / end)
            self.state.save(self.learner, end if stop else epoch + 1)
            epoch_log.write()
            if stop:
                break
        return epoch + 1 if end > start else start

    def _train(self, epoch: int) -> EpochResult:
        batches = self.data.train_batches(epoch, self.train_transform, self.plan.batch_size)
        try:
            with self.watchdog.watching(f"training epoch {epoch}") as beat:
                return train_one_epoch(self.learner, batches, epoch, self.reporter,
                                       self.should_stop, on_batch=beat, draw_bar=self.draw_bar)
        except TrainingInterrupted:
            self.state.save(self.learner, epoch, interrupted_in=epoch)
            raise
        except mx.base.MXNetError as error:
            if _is_out_of_memory(error):
                raise _out_of_memory_error(self.state.network, self.plan.batch_size,
                                           self.learner.contexts) from None
            raise

    def _validate(self, epoch: int, result: EpochResult) -> MeanAveragePrecision | None:
        """Report the epoch's throughput and losses, then validate: the epoch's mAPs, VOC07
        11-point (`validation:mAP`) and area (None without validation data, or on a host that
        does not validate)."""
        self.reporter.throughput(result.images_per_second)
        LOG.info("epoch %d: cross_entropy %.4f, smooth_l1 %.4f, %.2f images/s, %.1f s, lr %g",
                 epoch, result.cross_entropy, result.smooth_l1, result.images_per_second,
                 result.seconds, self.learner.trainer.learning_rate)
        if not self.plan.validates or not self.data.has_validation:
            return None
        with self.watchdog.watching(f"validation after epoch {epoch}") as beat:
            maps = validate(self.learner.net, self.data.validation_batches(
                self.val_transform, self.plan.batch_size), self.learner.contexts,
                self.metric, on_batch=beat)
        if not math.isfinite(maps.voc07):
            LOG.warning("epoch %d: mAP is undefined (no ground-truth boxes?); counted as 0", epoch)
            maps = MeanAveragePrecision(0.0, 0.0, maps.per_class_voc07, maps.per_class_area)
        LOG.info("epoch %d: validation mAP %.4f (VOC07 11-point), %.4f (area)", epoch,
                 maps.voc07, maps.area)
        LOG.info("epoch %d: AP per class: %s", epoch, ", ".join(
            f"{name} {ap:.4f}" for name, ap in self._per_class(maps).items()) or "none")
        self.reporter.validation_map(epoch, maps.voc07)
        return maps

    def _class_names(self) -> list[str]:
        names = self.data.class_names
        return [names.get(class_id, str(class_id))
                for class_id in range(self.state.network.num_classes)]

    def _per_class(self, maps: MeanAveragePrecision) -> dict[str, float]:
        """Each class's VOC07 AP by name (classes without ground truth have none)."""
        names = self.data.class_names
        return {names.get(class_id, str(class_id)): ap
                for class_id, ap in sorted(maps.per_class_voc07.items())}

    def _tensorboard(self, row: dict, validated: bool) -> None:
        assert self.tensorboard is not None
        self.tensorboard.epoch(row)
        if validated:  # the network is in inference mode (validate hybridized it so)
            self.tensorboard.detections(row["epoch"], self.learner.net,
                                        self.state.network.image_shape,
                                        self.learner.contexts[0], self._class_names())

    def _row(self, epoch: int, result: EpochResult,
             maps: MeanAveragePrecision | None) -> dict:
        return {
            "epoch": epoch, "cross_entropy": result.cross_entropy,
            "smooth_l1": result.smooth_l1,
            "validation_map": maps.voc07 if maps is not None else None,
            "validation_map_area": maps.area if maps is not None else None,
            "validation_ap_per_class": self._per_class(maps) if maps is not None else None,
            "learning_rate": self.learner.trainer.learning_rate,
            "images_per_second": result.images_per_second, "seconds": result.seconds}
