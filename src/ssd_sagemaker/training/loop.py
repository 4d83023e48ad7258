"""One pass over the training data and one over the validation data (GluonCV's SSD recipe:
targets from the loader, `SSDMultiBoxLoss` normalised by positives, batch split over devices)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass

import mxnet as mx
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon

from ssd_sagemaker.devices import split_batch, zero_idle_gradients
from ssd_sagemaker.evaluation import DetectionMAP, MeanAveragePrecision
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.training.observers import BatchDone, EpochObserver, standard_observers
from ssd_sagemaker.training.precision import MixedPrecision


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


def train_step(learner: Learner, loss_fn: Callable, backward: Callable, data: mx.nd.NDArray,
               cls_targets: mx.nd.NDArray, box_targets: mx.nd.NDArray
               ) -> tuple[list[mx.nd.NDArray], list[mx.nd.NDArray]]:
    """One update on one batch, split over the learner's devices: forward, the SSD loss
    (already normalised by the positive anchors), `backward` (the precision's, which may scale
    the loss), the optimizer step. Returns the per-device class and box losses."""
    net, contexts = learner.net, learner.contexts
    data = split_batch(data, contexts)
    cls_targets = split_batch(cls_targets, contexts)
    box_targets = split_batch(box_targets, contexts)
    with autograd.record():
        outputs = [net(x) for x in data]
        sum_loss, cls_loss, box_loss = loss_fn([out[0] for out in outputs],
                                               [out[1] for out in outputs], cls_targets,
                                               box_targets)
        backward(sum_loss)
    zero_idle_gradients(net, contexts[len(data):])
    learner.trainer.step(learner.gradient_divisor)
    return cls_loss, box_loss


def run_epoch(learner: Learner, loader: Iterable, epoch: int,
              observers: Sequence[EpochObserver], loss_fn: Callable | None = None
              ) -> EpochResult:
    """`train_step` over every batch in the learner's precision (in force for this pass
    only), each finished batch shown to the `observers`, which may end the pass by raising."""
    loss_fn = loss_fn or SSDMultiBoxLoss()
    cross_entropy, smooth_l1 = mx.metric.Loss("CrossEntropy"), mx.metric.Loss("SmoothL1")
    stream = iter(loader)
    first = next(stream, None)
    if learner.precision is not None and first is not None:  # proves auto's float16 on it
        learner.precision.settle(learner.net, first, learner.contexts, loss_fn)
    learner.net.hybridize(static_alloc=True, static_shape=True)  # traced in this arithmetic
    started, images = time.time(), 0
    batches = len(loader) if isinstance(loader, Sized) else 0
    arithmetic = (learner.precision.training(learner.net) if learner.precision
                  else contextlib.nullcontext(autograd.backward))
    try:
        with arithmetic as backward:
            for batch_index, (data, cls_targets, box_targets) in enumerate(
                    itertools.chain([first] if first is not None else [], stream)):
                batch_size = data.shape[0]
                cls_loss, box_loss = train_step(learner, loss_fn, backward, data, cls_targets,
                                                box_targets)
                cross_entropy.update(0, [loss * batch_size for loss in cls_loss])
                smooth_l1.update(0, [loss * batch_size for loss in box_loss])
                images += batch_size
                done = BatchDone(epoch, batch_index, batches, images, time.time() - started,
                                 cross_entropy.get()[1], smooth_l1.get()[1],
                                 learner.trainer.learning_rate)
                for observer in observers:
                    observer.after_batch(done)
    finally:
        for observer in observers:
            observer.close()
    return EpochResult(cross_entropy.get()[1], smooth_l1.get()[1], images, time.time() - started)


def train_one_epoch(learner: Learner, loader: Iterable, epoch: int, reporter: MetricReporter,
                    should_stop: Callable[[], bool] | None = None,
                    on_batch: Callable[[], None] | None = None,
                    loss_fn: Callable | None = None,
                    draw_bar: bool = False) -> EpochResult:
    """A training pass with the standard observers: a ClientError on a non-finite loss,
    TrainingInterrupted at the first batch boundary after `should_stop()` turns true, a tqdm
    bar (`draw_bar`, as `progress.draws_bar` decides for the job) or about ten log lines per
    epoch, the metric lines, and `on_batch` after each finished batch (the progress
    watchdog's beat)."""
    batches = len(loader) if isinstance(loader, Sized) else 0
    return run_epoch(learner, loader, epoch,
                     standard_observers(epoch, batches, reporter, should_stop, on_batch, draw_bar),
                     loss_fn)


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
