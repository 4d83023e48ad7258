"""The devices to compute on (every GPU MXNet sees, else the CPU) and how a batch is spread
over them."""

from __future__ import annotations

from collections.abc import Sequence

import mxnet as mx
from mxnet import gluon


def available_contexts() -> list[mx.Context]:
    """All GPUs (`mx.context.num_gpus()`), or `[mx.cpu()]` when there are none."""
    gpus = mx.context.num_gpus()
    return [mx.gpu(i) for i in range(gpus)] if gpus else [mx.cpu()]


def split_batch(batch: mx.nd.NDArray, contexts: Sequence[mx.Context]) -> list[mx.nd.NDArray]:
    """The batch in consecutive slices whose sizes differ by at most one, one per device, on
    the first `len(batch)` devices only when it has fewer images than devices: MXNet's own split
    gives the others empty slices, on which a forward pass fails."""
    used = list(contexts)[:max(1, batch.shape[0])]
    return gluon.utils.split_and_load(batch, used, even_split=False)


def zero_idle_gradients(net: gluon.Block, idle: Sequence[mx.Context]) -> None:
    """Devices that got no images in this batch contribute a zero gradient: the kvstore sums
    every device's gradient (a stale one would be the previous batch's), and each device then
    applies the same update to its copy of the weights. MXNet 1.x refuses a step with a gradient
    no backward pass wrote ("stale"), and has no public way to mark one as written."""
    if not idle:
        return
    for param in net.collect_params().values():
        if param.grad_req == "null":
            continue
        for context in idle:
            param.grad(context)[:] = 0
            param.data(context)._fresh_grad = True
