"""The optimizer and its learning-rate schedule from the hyperparameters: which settings each
optimizer takes (`momentum` only for sgd, `weight_decay` for sgd and rmsprop), and
`lr_scheduler_step` epochs turned into update counts."""

from __future__ import annotations

import logging
import math
from typing import Any

import mxnet as mx

LOG = logging.getLogger(__name__)

# Which of the documented settings each optimizer honours.
TAKES_MOMENTUM = frozenset({"sgd"})
TAKES_WEIGHT_DECAY = frozenset({"sgd", "rmsprop"})


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
