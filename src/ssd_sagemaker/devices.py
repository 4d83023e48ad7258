"""The devices to compute on: every GPU MXNet sees, else the CPU."""

from __future__ import annotations

import mxnet as mx


def available_contexts() -> list[mx.Context]:
    """All GPUs (`mx.context.num_gpus()`), or `[mx.cpu()]` when there are none."""
    gpus = mx.context.num_gpus()
    return [mx.gpu(i) for i in range(gpus)] if gpus else [mx.cpu()]
