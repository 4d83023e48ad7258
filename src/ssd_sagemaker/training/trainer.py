"""`train` wiring: validated hyperparameters + data channels → SSD → epochs of training and
validation → the best model exported to `/opt/ml/model`. Each concern lives in its own module
(network, layers, schedule, loop, epochs, precision, early stopping, checkpoint, warm
start); this one only connects them in order."""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ssd_sagemaker.data.channels import Shard, TrainingData, read_training_data
from ssd_sagemaker.data.transforms.presets import training_transform, validation_transform
from ssd_sagemaker.devices import available_contexts
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import Hyperparameters
from ssd_sagemaker.job import TrainingJob
from ssd_sagemaker.metrics import EpochLog, MetricReporter
from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.model.layers import freeze_layers
from ssd_sagemaker.model.network import build_network, model_cache_dir, pretrained_base_file
from ssd_sagemaker.model.quantization import (
    CALIBRATION_IMAGES,
    measured,
    write_int8_network,
)
from ssd_sagemaker.seeding import seed_everything
from ssd_sagemaker.training import warm_start
from ssd_sagemaker.training.checkpoint import Checkpointer
from ssd_sagemaker.training.distributed import (
    DistributedJob,
    choose_kv_store,
    initialise_kvstore,
    make_cluster,
)
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.epochs import EpochLoop, RunPlan
from ssd_sagemaker.training.loop import Learner
from ssd_sagemaker.training.precision import mixed_precision, resolve_precision
from ssd_sagemaker.training.schedule import (
    learning_rate_schedule,
    optimizer_settings,
    updates_per_epoch,
)
from ssd_sagemaker.training.state import TrainingState
from ssd_sagemaker.training.tensorboard import open_tensorboard
from ssd_sagemaker.training.watchdog import Watchdog, progress_timeout

LOG = logging.getLogger(__name__)

POST_NMS_DETECTIONS = 100
MODEL_CHANNEL = "model"
# dist_sync: servers sum gradients, every worker applies the same update itself (so optimizer
# state is local and checkpointed); dist_async: MXNet requires the servers to update.
UPDATE_ON_KVSTORE: dict[str | None, bool] = {"dist_sync": False, "dist_async": True}


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


def exported_classes(num_classes: int, data: TrainingData,
                     at_start: tuple[str, ...]) -> tuple[str, ...]:
    """The class names for model_info.json, asked of the data again at export: a Pipe-mode
    manifest names classes as they stream by, the start-up peek saw only the first samples."""
    classes = class_names(num_classes, data.class_names)
    if classes != at_start:
        LOG.info("class names found while streaming: %s (at start: %s)", list(classes),
                 list(at_start))
    return classes


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


def warn_stream_count(hp: Hyperparameters, stream: str, samples: int) -> None:
    """One worker in Pipe mode: epochs are as long as the stream, while the learning-rate
    schedule counts updates from num_training_samples; say what a mismatch does to it."""
    if samples == hp.num_training_samples:
        return
    planned = updates_per_epoch(hp.num_training_samples, hp.mini_batch_size)
    actual = updates_per_epoch(samples, hp.mini_batch_size)
    effect = "lr_scheduler_step is not set, so only the epoch length differs"
    if hp.lr_scheduler_step:
        shifted = [f"epoch {step} (update {step * planned}) comes after "
                   f"{step * planned / actual:.1f} epochs"
                   + (f", i.e. never within epochs={hp.epochs}"
                      if step * planned / actual >= hp.epochs else "")
                   for step in hp.lr_scheduler_step]
        effect = "the learning-rate step planned after " + "; after ".join(shifted)
    LOG.warning("num_training_samples=%d but the Pipe-mode stream %s held %d samples: an epoch "
                "is %d updates of mini_batch_size=%d, not the %d the schedule was planned with; "
                "%s. Set num_training_samples=%d.", hp.num_training_samples, stream, samples,
                actual, hp.mini_batch_size, planned, effect, samples)


@dataclass(frozen=True)
class StartingWeights:
    """Where the network's first weights come from: an earlier artifact's (`warm`, incremental
    training), else the pretrained base's file (`pretrained`), else neither (random)."""

    warm: dict[str, mx.nd.NDArray] | None = None
    pretrained: Path | None = None


def _starting_weights(env: TrainingJob, hp: Hyperparameters) -> StartingWeights:
    """Decided once, up front: a model channel's artifact is checked and read here."""
    if MODEL_CHANNEL in env.channels:
        with warm_start.located_artifact(env.paths.channel_dir(MODEL_CHANNEL)) as artifact:
            warm_start.check_compatible(artifact, NetworkIdentity(
                hp.base_network, hp.image_shape, hp.num_classes))
            return StartingWeights(warm=warm_start.read_weights(artifact))
    if hp.use_pretrained_model:
        return StartingWeights(pretrained=pretrained_base_file(hp.base_network,
                                                               model_cache_dir()))
    return StartingWeights()


def train(env: TrainingJob, should_stop: Callable[[], bool] | None = None,
          contexts: Sequence[mx.Context] | None = None) -> TrainingSummary:
    """The `train` job (read and validated by `job.read_training_job`): on this host alone or,
    with several hosts, as one worker of a parameter-server job."""
    hp = env.hyperparameters
    contexts = list(contexts or available_contexts())
    kv_store = choose_kv_store(env.resources, hp.kv_store, len(contexts))
    if kv_store is None or not kv_store.startswith("dist"):
        return run_training(env, hp, contexts, kv_store, should_stop=should_stop)
    with DistributedJob(make_cluster(env.resources, kv_store, env.settings), env.paths.output_dir,
                        env.settings.join_timeout) as job:
        return run_training(env, hp, contexts, kv_store, should_stop=should_stop, job=job)


def _release_kvstore(net: gluon.Block) -> None:
    """Let the distributed kvstore be freed now (after `del` of the trainer): its destructor is
    ps-lite's finalisation barrier, which ends every worker, server and the scheduler
    together. Parameters keep a reference to their Trainer, which holds the kvstore."""
    for param in net.collect_params().values():
        param._set_trainer(None)  # MXNet 1.x has no public way to detach a Trainer


def _prepare_network(hp: Hyperparameters, classes: tuple[str, ...], weights: StartingWeights,
                     contexts: Sequence[mx.Context]):
    """The SSD with its starting weights (seeded, pretrained base or warm start), frozen
    layers and NMS settings, on every device; plus its anchors for target generation."""
    seed_everything()
    net = build_network(hp.base_network, hp.image_shape, classes, weights.pretrained,
                        ctx=contexts[0])
    if weights.warm is not None:
        warm_start.load_weights(net, weights.warm)
    freeze_layers(net, hp.base_network, hp.freeze_layer_pattern)
    net.set_nms(nms_thresh=hp.nms_threshold, nms_topk=hp.nms_topk, post_nms=POST_NMS_DETECTIONS)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, hp.image_shape, hp.image_shape), ctx=contexts[0]))
    net.collect_params().reset_ctx(contexts)
    return net, anchors


def _export(net: gluon.HybridBlock, env: TrainingJob, hp: Hyperparameters,
            classes: tuple[str, ...]) -> None:
    """Write the model artifact (inference graph on the CPU) to /opt/ml/model."""
    net.collect_params().reset_ctx(mx.cpu())
    files = save_artifact(net, env.paths.model_dir,
                          ModelInfo(classes, hp.image_shape, hp.base_network, hp.nms_threshold),
                          hp.to_json_dict())
    LOG.info("model artifact written: %s", ", ".join(str(f) for f in files))


def _export_int8(env: TrainingJob, hp: Hyperparameters, data: TrainingData) -> None:
    """`quantize=int8`: calibrate the exported network on a sample of the data and add the
    INT8 network to the artifact (`model/quantization.py` says which layers stay float32)."""
    batches = list(data.calibration_batches(validation_transform(hp.image_shape), 8,
                                            CALIBRATION_IMAGES))
    images = np.concatenate([batch[0].asnumpy() for batch in batches])
    labels = [label for batch in batches for label in batch[1].asnumpy()]
    entry, files = write_int8_network(env.paths.model_dir, images, labels)
    LOG.info("INT8 network written (calibrated on %d images, %d convolutions kept in float32, "
             "mAP against float32 %s, against the labels %s where float32 has %s): %s",
             len(images), len(entry.float32_layers), measured(entry.fidelity_map),
             measured(entry.labels_map), measured(entry.float32_labels_map),
             ", ".join(str(f) for f in files))


def _read_channels(env: TrainingJob, hp: Hyperparameters, shard: Shard) -> TrainingData:
    """The training data; in Pipe mode under the progress watchdog, since the first samples
    are read now and a FIFO that never opens or stays silent would otherwise hang the job."""
    if not any(channel.input_mode == "Pipe" for channel in env.channels.values()):
        return read_training_data(env.paths, env.channels, hp, shard=shard)
    watchdog = Watchdog(progress_timeout(True, env.settings), pipe_mode=True)
    with watchdog.watching("start-up, reading the first samples of the Pipe-mode channels"):
        return read_training_data(env.paths, env.channels, hp, shard=shard)


def run_training(env: TrainingJob, hp: Hyperparameters, contexts: Sequence[mx.Context],
                 kv_store: str | None, reporter: MetricReporter | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 job: DistributedJob | None = None) -> TrainingSummary:
    """Train as the hyperparameters say and write the model artifact (on the master host).
    Resumes from `/opt/ml/checkpoints` when a checkpoint is there; raises TrainingInterrupted
    (after checkpointing) when `should_stop()` turns true. With a distributed `job`, this
    process is one worker: it reads its shard, and the master's validation decides for all."""
    started = time.time()
    reporter = reporter or MetricReporter(env.resources.current_host)
    dist_store = mx.kv.create(kv_store) if job is not None else None
    workers, rank = (dist_store.num_workers, dist_store.rank) if dist_store is not None else (1, 0)
    # dist_sync: the servers sum the gradients of this many workers into one update
    sync_workers = workers if kv_store == "dist_sync" else 1
    precision = resolve_precision(hp.precision, hp.base_network, contexts, kv_store)
    weights = _starting_weights(env, hp)
    data = _read_channels(env, hp, Shard(rank, workers))
    data.watch_stream_count(functools.partial(warn_stream_count, hp))
    tensorboard = None
    try:
        tensorboard = open_tensorboard(env, data)
        _check_batch_size(hp, data.num_train_images)
        classes = class_names(hp.num_classes, data.class_names)
        LOG.info("training %s SSD at %d px for classes %s on %s, augmentation %s",
                 hp.base_network, hp.image_shape, list(classes), contexts, hp.augmentation)
        net, anchors = _prepare_network(hp, classes, weights, contexts)
        trainer = _make_trainer(net, hp, kv_store, sync_workers, dist_store)
        learner = Learner(net, trainer, contexts, mixed_precision(hp.precision, precision, trainer),
                          sync_workers)
        state = _training_state(env, hp, classes, kv_store)
        start_epoch = _resume(state, learner, job)
        if job is not None:
            initialise_kvstore(trainer)
        transforms = (training_transform(hp.image_shape, anchors, hp.augmentation),
                      validation_transform(hp.image_shape))
        loop = EpochLoop(hp, learner, data, transforms,
                         RunPlan(start_epoch, hp.epochs, validates=env.resources.is_master,
                                 settings=env.settings),
                         state, reporter, job, should_stop, tensorboard)
        epochs_run = loop.run()

        stopping = state.stopping
        if stopping.best_epoch is not None and stopping.best_epoch != epochs_run - 1:
            LOG.info("exporting the best epoch %d (mAP %.4f), not the last", stopping.best_epoch,
                     stopping.best_map)
            net.load_parameters(str(state.checkpointer.best_weights), ctx=contexts)
        if env.resources.is_master:
            _export(net, env, hp, exported_classes(hp.num_classes, data, classes))
            if hp.quantize == "int8":
                _export_int8(env, hp, data)
        if job is not None:
            _release_kvstore(net)
            del trainer, dist_store, loop, learner
            gc.collect()
        return TrainingSummary(epochs_run, stopping.best_map, stopping.best_epoch,
                               time.time() - started)
    finally:
        data.close()  # stop the loader's worker processes
        if tensorboard is not None:
            tensorboard.close()


def _training_state(env: TrainingJob, hp: Hyperparameters, classes: tuple[str, ...],
                    kv_store: str | None) -> TrainingState:
    """Early stopping, the per-epoch metrics (files on the master host only) and the
    checkpoints, before anything is resumed into them."""
    return TrainingState(
        EarlyStopping(hp.early_stopping, hp.early_stopping_min_epochs,
                      hp.early_stopping_patience, hp.early_stopping_tolerance),
        EpochLog(env.paths.output_data_dir if env.resources.is_master else None),
        Checkpointer(env.paths.checkpoint_dir),
        NetworkIdentity.of_classes(hp.base_network, hp.image_shape, classes),
        optimizer_state=kv_store != "dist_async")


def _make_trainer(net: gluon.HybridBlock, hp: Hyperparameters, kv_store: str | None,
                  sync_workers: int, dist_store: Any = None) -> gluon.Trainer:
    """The optimizer with its step schedule, counted in updates: under dist_sync the batches
    of all `sync_workers` in one step make one (server-side) update. `dist_store` is the
    distributed KVStore already created for a multi-host job; on one host the Trainer creates
    its own from the `kv_store` type."""
    batches_per_epoch = updates_per_epoch(hp.num_training_samples,
                                          hp.mini_batch_size * sync_workers)
    schedule = learning_rate_schedule(hp.learning_rate, hp.lr_scheduler_step,
                                      hp.lr_scheduler_factor, batches_per_epoch)
    return gluon.Trainer(net.collect_params(), hp.optimizer,
                         optimizer_settings(hp.optimizer, hp.learning_rate, hp.momentum,
                                            hp.weight_decay, schedule),
                         kvstore=kv_store if dist_store is None else dist_store,
                         update_on_kvstore=UPDATE_ON_KVSTORE.get(kv_store))


def _resume(state: TrainingState, learner: Learner, job: DistributedJob | None) -> int:
    """Restore the learner and the run's state from a checkpoint, if any; the epoch to start
    from (which every host of a distributed job must agree on)."""
    start_epoch = state.resume(learner)
    if job is not None and job.agree("start_epoch", start_epoch) != start_epoch:
        raise ClientError(
            f"This host's checkpoint starts at epoch {start_epoch}, the master's at another "
            f"epoch; give every host the same checkpoint folder contents (or none).")
    return start_epoch
