"""The optimizer and its learning-rate schedule from the hyperparameters: which settings each
optimizer takes (`momentum` only for sgd, `weight_decay` for sgd and rmsprop),
`lr_scheduler_step` epochs turned into update counts, and the data's size held against the
`num_training_samples` those counts are planned with."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

# Which of the documented settings each optimizer honours.
TAKES_MOMENTUM = frozenset({"sgd"})
TAKES_WEIGHT_DECAY = frozenset({"sgd", "rmsprop"})
# dist_sync: servers sum gradients, every worker applies the same update itself (so optimizer
# state is local and checkpointed); dist_async: MXNet requires the servers to update.
UPDATE_ON_KVSTORE: dict[str | None, bool] = {"dist_sync": False, "dist_async": True}


@dataclass(frozen=True)
class Optimization:
    """The optimizer's hyperparameters and the plan its schedule counts in: `epochs` of
    `num_training_samples` images in batches of `mini_batch_size`."""

    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    lr_scheduler_step: tuple[int, ...]
    lr_scheduler_factor: float
    num_training_samples: int
    mini_batch_size: int
    epochs: int


def updates_per_epoch(num_training_samples: int, mini_batch_size: int) -> int:
    """Batches per epoch as the documented schedule counts them."""
    return max(1, math.ceil(num_training_samples / mini_batch_size))


def learning_rate_schedule(learning_rate: float, steps: tuple[int, ...], factor: float,
                           batches_per_epoch: int) -> mx.lr_scheduler.LRScheduler | None:
    """Multiply the rate by `factor` after each epoch in `steps` (None: constant rate)."""
    if not steps:
        return None
    return mx.lr_scheduler.MultiFactorScheduler(
        step=[epoch * batches_per_epoch for epoch in steps], factor=factor, base_lr=learning_rate)


def optimizer_settings(optimizer: str, learning_rate: float, momentum: float,
                       weight_decay: float, schedule: mx.lr_scheduler.LRScheduler | None
                       ) -> dict[str, Any]:
    """The `gluon.Trainer` optimizer parameters, logging the settings an optimizer ignores."""
    settings: dict[str, Any] = {"learning_rate": learning_rate}
    if schedule is not None:
        settings["lr_scheduler"] = schedule
    if optimizer in TAKES_MOMENTUM:
        settings["momentum"] = momentum
    else:
        LOG.info("optimizer %s ignores momentum=%g", optimizer, momentum)
    if optimizer in TAKES_WEIGHT_DECAY:
        settings["wd"] = weight_decay
    else:
        LOG.info("optimizer %s ignores weight_decay=%g", optimizer, weight_decay)
    return settings


def make_trainer(net: gluon.HybridBlock, plan: Optimization, kv_store: str | None,
                 sync_workers: int, dist_store: Any = None) -> gluon.Trainer:
    """The optimizer with its step schedule, counted in updates: under dist_sync the batches
    of all `sync_workers` in one step make one (server-side) update. `dist_store` is the
    distributed KVStore already created for a multi-host job; on one host the Trainer creates
    its own from the `kv_store` type."""
    batches_per_epoch = updates_per_epoch(plan.num_training_samples,
                                          plan.mini_batch_size * sync_workers)
    schedule = learning_rate_schedule(plan.learning_rate, plan.lr_scheduler_step,
                                      plan.lr_scheduler_factor, batches_per_epoch)
    return gluon.Trainer(net.collect_params(), plan.optimizer,
                         optimizer_settings(plan.optimizer, plan.learning_rate, plan.momentum,
                                            plan.weight_decay, schedule),
                         kvstore=kv_store if dist_store is None else dist_store,
                         update_on_kvstore=UPDATE_ON_KVSTORE.get(kv_store))


def check_batch_size(plan: Optimization, train_images: int) -> None:
    """A batch larger than the data is refused; a data size other than the planned
    `num_training_samples` is said with what it does to the schedule."""
    if train_images < plan.mini_batch_size:
        raise ClientError(
            f"mini_batch_size={plan.mini_batch_size} is larger than the {train_images} training "
            f"images; set mini_batch_size to at most {train_images}."
        )
    if train_images != plan.num_training_samples:
        LOG.warning("num_training_samples=%d but the train channel has %d images; the "
                    "lr_scheduler_step epochs are converted with num_training_samples",
                    plan.num_training_samples, train_images)


def warn_stream_count(plan: Optimization, stream: str, samples: int) -> None:
    """One worker in Pipe mode: epochs are as long as the stream, while the learning-rate
    schedule counts updates from num_training_samples; say what a mismatch does to it."""
    if samples == plan.num_training_samples:
        return
    planned = updates_per_epoch(plan.num_training_samples, plan.mini_batch_size)
    actual = updates_per_epoch(samples, plan.mini_batch_size)
    effect = "lr_scheduler_step is not set, so only the epoch length differs"
    if plan.lr_scheduler_step:
        shifted = [f"epoch {step} (update {step * planned}) comes after "
                   f"{step * planned / actual:.1f} epochs"
                   + (f", i.e. never within epochs={plan.epochs}"
                      if step * planned / actual >= plan.epochs else "")
                   for step in plan.lr_scheduler_step]
        effect = "the learning-rate step planned after " + "; after ".join(shifted)
    LOG.warning("num_training_samples=%d but the Pipe-mode stream %s held %d samples: an epoch "
                "is %d updates of mini_batch_size=%d, not the %d the schedule was planned with; "
                "%s. Set num_training_samples=%d.", plan.num_training_samples, stream, samples,
                actual, plan.mini_batch_size, planned, effect, samples)
