"""`train` wiring: validated hyperparameters + data channels → SSD → epochs of training and
validation → the best model exported to `/opt/ml/model`. Each concern lives in its own module;
this one only connects them in order."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Sequence

import mxnet as mx
import numpy as np
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
from mxnet import autograd, gluon

from ssd_sagemaker.data.channels import read_training_data
from ssd_sagemaker.data.transforms import training_transform, validation_transform
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.environment import TrainingEnvironment
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import Hyperparameters, parse_hyperparameters
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
from ssd_sagemaker.model.network import build_network, model_cache_dir, pretrained_base_file
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.loop import train_one_epoch, validate
from ssd_sagemaker.training.schedule import (learning_rate_schedule, optimizer_settings,
                                             updates_per_epoch)

LOG = logging.getLogger(__name__)

SEED = 42
POST_NMS_DETECTIONS = 100


@dataclass(frozen=True)
class TrainingSummary:
    """What a finished run achieved (logged, and handy for tests and benchmarks)."""

    epochs_run: int
    best_map: float | None
    best_epoch: int | None
    seconds: float


def class_names(num_classes: int, given: dict[int, str]) -> tuple[str, ...]:
    """Names from the data (e.g. annotations' `categories`), `class_<id>` where none is given."""
    return tuple(given.get(i, f"class_{i}") for i in range(num_classes))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def _check_batch_size(hp: Hyperparameters, train_images: int) -> None:
    if train_images < hp.mini_batch_size:
        raise ClientError(
            f"mini_batch_size={hp.mini_batch_size} is larger than the {train_images} training "
            f"images; set mini_batch_size to at most {train_images}."
        )
    if train_images != hp.num_training_samples:
        LOG.warning("num_training_samples=%d but the train channel has %d images; the "
                    "lr_scheduler_step epochs are converted with num_training_samples",
                    hp.num_training_samples, train_images)


def _snapshot(net: gluon.Block) -> dict[str, mx.nd.NDArray]:
    """A CPU copy of every parameter (the best epoch's weights)."""
    return {name: p.data().copyto(mx.cpu()) for name, p in net.collect_params().items()}


def _restore(net: gluon.Block, snapshot: dict[str, mx.nd.NDArray]) -> None:
    for name, param in net.collect_params().items():
        param.set_data(snapshot[name])


def run_training(env: TrainingEnvironment, reporter: MetricReporter | None = None,
                 contexts: Sequence[mx.Context] | None = None) -> TrainingSummary:
    """Train as the hyperparameters say and write the model artifact (on the master host)."""
    started = time.time()
    hp = parse_hyperparameters(env.hyperparameters)
    reporter = reporter or MetricReporter(env.resources.current_host)
    contexts = list(contexts or available_contexts())
    pretrained = (pretrained_base_file(hp.base_network, model_cache_dir())
                  if hp.use_pretrained_model else None)
    data = read_training_data(env.paths, env.channels, hp.num_classes)
    _check_batch_size(hp, data.num_train_images)
    classes = class_names(hp.num_classes, data.class_names)
    LOG.info("training %s SSD at %d px for classes %s on %s", hp.base_network, hp.image_shape,
             list(classes), contexts)

    _seed_everything(SEED)
    net = build_network(hp.base_network, hp.image_shape, classes, pretrained, ctx=contexts[0])
    net.set_nms(nms_thresh=hp.nms_threshold, nms_topk=hp.nms_topk, post_nms=POST_NMS_DETECTIONS)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, hp.image_shape, hp.image_shape), ctx=contexts[0]))
    net.collect_params().reset_ctx(contexts)

    train_transform = training_transform(hp.image_shape, anchors)
    val_transform = validation_transform(hp.image_shape)
    metric = VOC07MApMetric(iou_thresh=hp.overlap_threshold, class_names=list(classes))

    batches_per_epoch = updates_per_epoch(hp.num_training_samples, hp.mini_batch_size)
    schedule = learning_rate_schedule(hp.learning_rate, hp.lr_scheduler_step,
                                      hp.lr_scheduler_factor, batches_per_epoch)
    trainer = gluon.Trainer(net.collect_params(), hp.optimizer,
                            optimizer_settings(hp.optimizer, hp.learning_rate, hp.momentum,
                                               hp.weight_decay, schedule),
                            kvstore="device" if len(contexts) > 1 else None)
    stopping = EarlyStopping(hp.early_stopping, hp.early_stopping_min_epochs,
                             hp.early_stopping_patience, hp.early_stopping_tolerance)
    best_weights = None
    epochs_run = 0
    for epoch in range(hp.epochs):
        result = train_one_epoch(net, data.train_batches(epoch, train_transform, hp.mini_batch_size),
                                 trainer, contexts, epoch, reporter)
        epochs_run = epoch + 1
        reporter.throughput(result.images_per_second)
        LOG.info("epoch %d: cross_entropy %.4f, smooth_l1 %.4f, %.2f images/s, %.1f s, lr %g",
                 epoch, result.cross_entropy, result.smooth_l1, result.images_per_second,
                 result.seconds, trainer.learning_rate)
        stop = False
        if data.has_validation:
            score = validate(net, data.validation_batches(val_transform, hp.mini_batch_size),
                             contexts, metric)
            if not math.isfinite(score):
                LOG.warning("epoch %d: mAP is undefined (no ground-truth boxes?); counted as 0",
                            epoch)
                score = 0.0
            reporter.validation_map(epoch, score)
            stop = stopping.update(epoch, score)
            if stopping.best_epoch == epoch:
                best_weights = _snapshot(net)
        reporter.progress(100.0 * epochs_run / hp.epochs)
        if stop:
            reporter.progress(100.0)
            break

    if best_weights is not None and stopping.best_epoch != epochs_run - 1:
        LOG.info("exporting the best epoch %d (mAP %.4f), not the last", stopping.best_epoch,
                 stopping.best_map)
        _restore(net, best_weights)
    if env.resources.is_master:
        net.collect_params().reset_ctx(mx.cpu())
        files = save_artifact(net, env.paths.model_dir,
                              ModelInfo(classes, hp.image_shape, hp.base_network,
                                        hp.nms_threshold),
                              hp.to_json_dict())
        LOG.info("model artifact written: %s", ", ".join(str(f) for f in files))
    return TrainingSummary(epochs_run, stopping.best_map, stopping.best_epoch,
                           time.time() - started)
