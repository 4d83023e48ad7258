"""One seed for the job: run twice on the same data with the same hyperparameters, a job draws
the same initial weights, shuffles and augmentations (the data readers derive their per-epoch
and per-shard generators from it)."""

from __future__ import annotations

import random

import numpy as np

SEED = 42


def seed_everything(seed: int = SEED) -> None:
    """Seed the three generators a job draws from: Python's, NumPy's and MXNet's (imported
    here: `SEED` alone is read by code that never imports MXNet, such as validate-data)."""
    import mxnet as mx

    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)
