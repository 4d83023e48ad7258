"""One pass over the training data and one over the validation data (GluonCV's SSD recipe:
targets from the loader, `SSDMultiBoxLoss` normalised by positives, batch split over devices)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass

import mxnet as mx
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon
from tqdm import tqdm

from ssd_sagemaker.devices import split_batch, zero_idle_gradients
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluation import DetectionMAP, MeanAveragePrecision
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.training.interruption import TrainingInterrupted, stop_signal
from ssd_sagemaker.training.precision import MixedPrecision

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochResult:
    """Mean losses and speed of one training epoch."""

    cross_entropy: float
    smooth_l1: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Learner:
    """What one update needs: the network, its optimizer, the devices a batch is split over,
    the run's arithmetic (None: float32) and `gradient_divisor`, the number of dist_sync
    workers whose gradients the servers sum (1 otherwise)."""

    net: gluon.HybridBlock
    trainer: gluon.Trainer
    contexts: Sequence[mx.Context]
    precision: MixedPrecision | None = None
    gradient_divisor: int = 1


def train_one_epoch(learner: Learner, loader: Iterable, epoch: int, reporter: MetricReporter,
                    should_stop: Callable[[], bool] | None = None,
                    on_batch: Callable[[], None] | None = None,
                    loss_fn: SSDMultiBoxLoss | None = None,
                    draw_bar: bool = False) -> EpochResult:
    """Forward/backward/update over every batch. Stops with a ClientError on a non-finite loss,
    and with TrainingInterrupted at the first batch boundary after `should_stop()` turns true.
    Progress: a tqdm bar (`draw_bar`, as `progress.draws_bar` decides for the job) or about
    ten log lines per epoch.
    The learner's precision is in force for this pass only. `on_batch`: called after each
    finished batch (the progress watchdog's beat)."""
    net, trainer, contexts, precision = (learner.net, learner.trainer, learner.contexts,
                                         learner.precision)
    loss_fn = loss_fn or SSDMultiBoxLoss()
    cross_entropy = mx.metric.Loss("CrossEntropy")
    smooth_l1 = mx.metric.Loss("SmoothL1")
    stream = iter(loader)
    first = next(stream, None)
    if precision is not None and first is not None:  # proves auto's float16 on this batch
        precision.settle(net, first, contexts, loss_fn)
    started = time.time()
    images = 0
    batches = len(loader) if isinstance(loader, Sized) else 0
    log_interval = max(1, min(50, batches // 10))
    on_terminal = draw_bar
    bar = tqdm(total=batches or None, desc=f"epoch {epoch}", unit="batch", leave=False,
               disable=not on_terminal)
    net.hybridize(static_alloc=True, static_shape=True)  # traced anew in this pass's arithmetic
    arithmetic = precision.training(net) if precision else contextlib.nullcontext(
        autograd.backward)
    with arithmetic as backward:
        for batch_index, (data, cls_targets, box_targets) in enumerate(
                itertools.chain([first] if first is not None else [], stream)):
            batch_size = data.shape[0]
            data = split_batch(data, contexts)
            cls_targets = split_batch(cls_targets, contexts)
            box_targets = split_batch(box_targets, contexts)
            with autograd.record():
                outputs = [net(x) for x in data]
                cls_preds = [out[0] for out in outputs]
                box_preds = [out[1] for out in outputs]
                sum_loss, cls_loss, box_loss = loss_fn(cls_preds, box_preds, cls_targets,
                                                       box_targets)
                backward(sum_loss)
            zero_idle_gradients(net, contexts[len(data):])
            # The loss is already normalised by the number of positive anchors.
            trainer.step(learner.gradient_divisor)
            cross_entropy.update(0, [loss * batch_size for loss in cls_loss])
            smooth_l1.update(0, [loss * batch_size for loss in box_loss])
            images += batch_size
            ce_value, l1_value = cross_entropy.get()[1], smooth_l1.get()[1]
            if not (math.isfinite(ce_value) and math.isfinite(l1_value)):
                raise ClientError(
                    f"Training diverged in epoch {epoch}, batch {batch_index}: the loss is not "
                    f"finite (cross_entropy={ce_value}, smooth_l1={l1_value}). Lower learning_rate "
                    f"(now {trainer.learning_rate:g})."
                )
            bar.update(1)
            if on_batch is not None:
                on_batch()
            if (batch_index + 1) % log_interval == 0 or batch_index + 1 == batches:
                elapsed = time.time() - started
                reporter.train_losses(epoch, batch_index, ce_value, l1_value)
                if not on_terminal:  # a Pipe-mode stream has no known length: "batch 7/?"
                    eta = (f"{elapsed / (batch_index + 1) * (batches - batch_index - 1):.0f} s"
                           if batches else "unknown")
                    LOG.info("epoch %d batch %d/%s: %.2f images/s, eta %s", epoch, batch_index + 1,
                             batches or "?", images / elapsed if elapsed else 0.0, eta)
            if should_stop is not None and should_stop():
                bar.close()
                raise TrainingInterrupted(epoch, batch_index + 1, stop_signal(should_stop))
    bar.close()
    return EpochResult(cross_entropy.get()[1], smooth_l1.get()[1], images, time.time() - started)


def validate(net: gluon.HybridBlock, loader: Iterable, contexts: Sequence[mx.Context],
             metric: DetectionMAP,
             on_batch: Callable[[], None] | None = None) -> MeanAveragePrecision:
    """mAP of `net` on the validation batches (labels padded with -1 rows, which are ignored):
    VOC07 11-point (`validation:mAP`) and area, see `evaluation.py`. `on_batch`: called after
    each batch."""
    metric.reset()
    net.hybridize()  # retrace in inference mode (the training graph has no NMS)
    for data, labels in loader:
        data = split_batch(data, contexts)
        labels = split_batch(labels, contexts)
        det_boxes, det_ids, det_scores, gt_boxes, gt_ids, gt_difficult = [], [], [], [], [], []
        for x, y in zip(data, labels):
            ids, scores, boxes = net(x)
            det_ids.append(ids)
            det_scores.append(scores)
            det_boxes.append(boxes.clip(0, x.shape[2]))
            gt_ids.append(y.slice_axis(axis=-1, begin=4, end=5))
            gt_boxes.append(y.slice_axis(axis=-1, begin=0, end=4))
            gt_difficult.append(y.slice_axis(axis=-1, begin=5, end=6) if y.shape[-1] > 5 else None)
        metric.update(det_boxes, det_ids, det_scores, gt_boxes, gt_ids, gt_difficult)
        if on_batch is not None:
            on_batch()
    return metric.result()
