"""`train` wiring: the training job (read and validated by `job.read_training_job`) → data
channels → SSD → epochs of training and validation → the best model exported to
`/opt/ml/model`. Only this module reads the job and its hyperparameters; each part (starting
point, network, schedule, loop, epochs, precision, early stopping, checkpoint, export,
distribution) takes the few values it needs, and this one connects them in order."""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mxnet as mx

from ssd_sagemaker.data.channels import Shard, read_training_data
from ssd_sagemaker.data.transforms.presets import training_transform, validation_transform
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.job import TrainingJob
from ssd_sagemaker.metrics import EpochLog, MetricReporter
from ssd_sagemaker.model.artifact import ModelInfo
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import Checkpointer
from ssd_sagemaker.training.distributed import (
    DistributedJob,
    choose_kv_store,
    distributed_job,
    initialise_kvstore,
    release_kvstore,
)
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.epochs import EpochLoop, RunPlan
from ssd_sagemaker.training.export import class_names, export_model
from ssd_sagemaker.training.loop import Learner
from ssd_sagemaker.training.network_setup import NetworkPlan, training_network
from ssd_sagemaker.training.precision import mixed_precision, resolve_precision
from ssd_sagemaker.training.schedule import (
    Optimization,
    check_batch_size,
    make_trainer,
    warn_stream_count,
)
from ssd_sagemaker.training.starting_point import starting_point
from ssd_sagemaker.training.state import TrainingState
from ssd_sagemaker.training.tensorboard import open_tensorboard
from ssd_sagemaker.training.watchdog import start_up_watch

LOG = logging.getLogger(__name__)

MODEL_CHANNEL = "model"


@dataclass(frozen=True)
class TrainingSummary:
    """What a finished run achieved (logged, and handy for tests and benchmarks)."""

    epochs_run: int
    best_map: float | None
    best_epoch: int | None
    seconds: float


def train(job: TrainingJob, should_stop: Callable[[], bool] | None = None,
          contexts: Sequence[mx.Context] | None = None) -> TrainingSummary:
    """The `train` job: on this host alone or, with several hosts, as one worker of a
    parameter-server job."""
    contexts = list(contexts or available_contexts())
    kv_store = choose_kv_store(job.resources, job.hyperparameters.kv_store, len(contexts))
    with distributed_job(kv_store, job.resources, job.settings,
                         job.paths.output_dir) as cluster:
        return run_training(job, contexts, kv_store, should_stop=should_stop, cluster=cluster)


def run_training(job: TrainingJob, contexts: Sequence[mx.Context], kv_store: str | None,
                 reporter: MetricReporter | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 cluster: DistributedJob | None = None) -> TrainingSummary:
    """Train as the hyperparameters say and write the model artifact (on the master host).
    Resumes from `/opt/ml/checkpoints` when a checkpoint is there; raises TrainingInterrupted
    (after checkpointing) when `should_stop()` turns true. With a distributed `cluster`, this
    process is one worker: it reads its shard, and the master's validation decides for all."""
    started = time.time()
    hp, paths, is_master = job.hyperparameters, job.paths, job.resources.is_master
    optimization = Optimization(hp.optimizer, hp.learning_rate, hp.momentum, hp.weight_decay,
                                hp.lr_scheduler_step, hp.lr_scheduler_factor,
                                hp.num_training_samples, hp.mini_batch_size, hp.epochs)
    network = NetworkPlan(hp.base_network, hp.image_shape, hp.freeze_layer_pattern,
                          hp.nms_threshold, hp.nms_topk)
    dist_store = mx.kv.create(kv_store) if cluster is not None else None
    workers, rank = (dist_store.num_workers, dist_store.rank) if dist_store is not None else (1, 0)
    # dist_sync: the servers sum the gradients of this many workers into one update
    sync_workers = workers if kv_store == "dist_sync" else 1
    precision = resolve_precision(hp.precision, hp.base_network, contexts, kv_store)
    start = starting_point(paths.channel_dir(MODEL_CHANNEL) if MODEL_CHANNEL in job.channels
                           else None, NetworkIdentity(hp.base_network, hp.image_shape,
                                                      hp.num_classes), hp.use_pretrained_model)
    with start_up_watch(any(channel.input_mode == "Pipe" for channel in job.channels.values()),
                        job.settings):
        data = read_training_data(paths, job.channels, hp, shard=Shard(rank, workers))
    data.watch_stream_count(functools.partial(warn_stream_count, optimization))
    tensorboard = None
    try:
        validation = job.channels.get("validation")
        if is_master:
            tensorboard = open_tensorboard(paths.output_dir, data, validation is not None
                                           and validation.input_mode == "File")
        check_batch_size(optimization, data.num_train_images)
        classes = class_names(hp.num_classes, data.class_names)
        LOG.info("training %s SSD at %d px for classes %s on %s, augmentation %s",
                 hp.base_network, hp.image_shape, list(classes), contexts, hp.augmentation)
        net, anchors = training_network(network, classes, start.pretrained, contexts)
        trainer = make_trainer(net, optimization, kv_store, sync_workers, dist_store)
        learner = Learner(net, trainer, contexts, mixed_precision(hp.precision, precision, trainer),
                          sync_workers)
        state = TrainingState(
            EarlyStopping(hp.early_stopping, hp.early_stopping_min_epochs,
                          hp.early_stopping_patience, hp.early_stopping_tolerance),
            EpochLog(paths.output_data_dir if is_master else None),
            Checkpointer(paths.checkpoint_dir),
            NetworkIdentity.of_classes(hp.base_network, hp.image_shape, classes),
            optimizer_state=kv_store != "dist_async")
        start_epoch = start.enter(learner, state, cluster)
        if cluster is not None:
            initialise_kvstore(trainer)
        transforms = (training_transform(hp.image_shape, anchors, hp.augmentation),
                      validation_transform(hp.image_shape))
        reporter = reporter or MetricReporter(job.resources.current_host)
        loop = EpochLoop(learner, data, transforms,
                         RunPlan(start_epoch, hp.epochs, hp.mini_batch_size, hp.overlap_threshold,
                                 validates=is_master, settings=job.settings),
                         state, reporter, cluster, should_stop, tensorboard)
        epochs_run = loop.run()
        state.restore_best(learner, epochs_run)
        if is_master:
            export_model(net, paths.model_dir, ModelInfo(classes, hp.image_shape,
                                                         hp.base_network, hp.nms_threshold),
                         hp.to_json_dict(), data, int8=hp.quantize == "int8")
        if cluster is not None:
            release_kvstore(net)
            del trainer, dist_store, loop, learner
            gc.collect()
        return TrainingSummary(epochs_run, state.stopping.best_map, state.stopping.best_epoch,
                               time.time() - started)
    finally:
        data.close()  # stop the loader's worker processes
        if tensorboard is not None:
            tensorboard.close()
