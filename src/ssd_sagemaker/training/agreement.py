"""Proof that a reduced precision computes what float32 does, before a run relies on it:
`precision=auto` takes float16 on GPUs only when one forward/backward of the first batch in
float16 (with its loss scale) agrees with the same pass in float32, from the same weights.
No GPU has run this project, so the choice proves itself on the hardware it runs on.

The passes are injected (`run_pass`): on a GPU they are the training graph's own; on a CPU,
where MXNet has no float16 convolution ("FP16 gemm on cpu not implemented"), tests give
passes whose arithmetic they control."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ssd_sagemaker.devices import split_batch

LOG = logging.getLogger(__name__)

# Relative difference of each loss (cross-entropy, smooth-L1) and of the gradients (L2 norm of
# the difference over the float32 norm, all trained parameters together). float16 keeps 11
# significant bits (~5e-4 relative per value) and sums convolutions in float32; a wrong kernel
# or an overflow is off by far more.
LOSS_TOLERANCE = 0.05
GRADIENT_TOLERANCE = 0.10
# The loss scales tried for the float16 pass: AMP's first, then as dynamic scaling would go
# down after overflowing steps (an overflow at 2**16 alone is routine, not a disagreement).
LOSS_SCALES = (2.0**16, 2.0**8, 1.0)


@dataclass(frozen=True)
class PassResult:
    """One forward/backward: the losses (cross-entropy, smooth-L1) and the gradients of the
    trained parameters, unscaled, as float64 arrays."""

    losses: tuple[float, float]
    gradients: dict[str, np.ndarray]
    loss_scale: float = 1.0


@dataclass(frozen=True)
class Agreement:
    """The verdict: `agrees`, the measured differences, and why not when it does not."""

    precision: str
    agrees: bool
    loss_difference: float
    gradient_difference: float
    reason: str = ""

    def describe(self) -> str:
        measured = (f"losses differ by {self.loss_difference:.2e} (tolerance "
                    f"{LOSS_TOLERANCE:.0%}), gradients by {self.gradient_difference:.2e} "
                    f"(tolerance {GRADIENT_TOLERANCE:.0%})")
        if self.agrees:
            return f"{self.precision} agrees with float32 on the first batch: {measured}"
        return f"{self.precision} disagrees with float32 on the first batch: {self.reason}"


def _relative(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)):
        return math.inf
    return abs(value - reference) / max(abs(reference), 1e-12)


def compare(precision: str, candidate: PassResult, reference: PassResult) -> Agreement:
    """The verdict on `candidate` (a pass in `precision`) against the float32 `reference`."""
    loss_difference = max(_relative(c, r) for c, r in zip(candidate.losses, reference.losses))
    squared_difference = squared_reference = 0.0
    for name, expected in reference.gradients.items():
        difference = candidate.gradients[name] - expected
        squared_difference += float(np.sum(difference * difference))
        squared_reference += float(np.sum(expected * expected))
    gradient_difference = (math.sqrt(squared_difference) / max(math.sqrt(squared_reference),
                                                                1e-30)
                           if math.isfinite(squared_difference) else math.inf)
    reasons = []
    if not all(math.isfinite(loss) for loss in candidate.losses):
        reasons.append(f"its losses are not finite ({candidate.losses[0]:g}, "
                       f"{candidate.losses[1]:g}: the forward pass overflows)")
    elif loss_difference > LOSS_TOLERANCE:
        reasons.append(f"its losses differ by {loss_difference:.2e}, more than "
                       f"{LOSS_TOLERANCE:.0%}")
    if not math.isfinite(gradient_difference):
        reasons.append(f"its gradients are not finite even at loss scale "
                       f"{candidate.loss_scale:g}")
    elif gradient_difference > GRADIENT_TOLERANCE:
        reasons.append(f"its gradients differ by {gradient_difference:.2e}, more than "
                       f"{GRADIENT_TOLERANCE:.0%}")
    return Agreement(precision, not reasons, loss_difference, gradient_difference,
                     "; ".join(reasons))


def check_agreement(precision: str, run_pass: Callable[[str, float], PassResult]
                    ) -> Agreement:
    """`run_pass(precision, loss_scale)` in float32, then in `precision` at each of
    LOSS_SCALES until its gradients are finite; the verdict."""
    reference = run_pass("float32", 1.0)
    candidate = reference
    for loss_scale in LOSS_SCALES:
        candidate = run_pass(precision, loss_scale)
        if all(np.isfinite(gradient).all() for gradient in candidate.gradients.values()):
            break
    return compare(precision, candidate, reference)


LossFunction = Callable[..., Sequence[Sequence[mx.nd.NDArray]]]
Arithmetic = Callable[[str], AbstractContextManager[Callable[[Sequence[mx.nd.NDArray]], None]]]


def training_pass(net: gluon.HybridBlock, batch: Sequence[mx.nd.NDArray],
                  contexts: Sequence[mx.Context], loss_fn: LossFunction,
                  arithmetic: Arithmetic) -> Callable[[str, float], PassResult]:
    """`run_pass` for `check_agreement` on the real network: one forward/backward of `batch`
    split over `contexts`, traced inside `arithmetic(precision)` (which yields the backward
    function), the losses multiplied by the loss scale before the backward pass and the
    gradients divided by it after. Weights do not move; the running statistics the passes
    touch (BatchNorm) are put back afterwards."""
    trained = {name: param for name, param in net.collect_params().items()
               if param.grad_req != "null"}
    frozen = {name: [array.copy() for array in param.list_data()]
              for name, param in net.collect_params().items() if param.grad_req == "null"}

    def run_pass(precision: str, loss_scale: float) -> PassResult:
        data, cls_targets, box_targets = (split_batch(part, contexts) for part in batch)
        try:
            with arithmetic(precision) as backward:
                net.hybridize(static_alloc=True, static_shape=True)  # traced in `precision`
                with autograd.record():
                    outputs = [net(x) for x in data]
                    sum_loss, cls_loss, box_loss = loss_fn([out[0] for out in outputs],
                                                           [out[1] for out in outputs],
                                                           cls_targets, box_targets)
                    backward([loss * loss_scale for loss in sum_loss])
                losses = (sum(float(loss.sum().asscalar()) for loss in cls_loss),
                          sum(float(loss.sum().asscalar()) for loss in box_loss))
                gradients = {name: np.sum([g.asnumpy().astype(np.float64)
                                           for g in param.list_grad()], axis=0) / loss_scale
                             for name, param in trained.items()}
        finally:  # the next pass (or the training loop) traces anew, in its own arithmetic
            net.hybridize(static_alloc=True, static_shape=True)
            for name, arrays in frozen.items():
                for array, saved in zip(net.collect_params()[name].list_data(), arrays):
                    saved.copyto(array)
        return PassResult(losses, gradients, loss_scale)

    return run_pass
