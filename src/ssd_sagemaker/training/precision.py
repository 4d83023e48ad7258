"""Mixed-precision training with MXNet AMP: convolutions in bfloat16 on CPUs with native
bfloat16 instructions, float16 with dynamic loss scaling on GPUs, float32 otherwise. Weights,
optimizer state, checkpoints and the exported artifact stay float32. `precision=auto`'s float16
is used only once it has agreed with float32 on the first batch (`agreement.py`).

`amp.init` swaps MXNet's operator functions module-wide, for good. `MixedPrecision.training`
installs AMP only around a training pass and then puts the original functions back, so
validation and export (and anything else in the process: tests, benchmarks) trace plain
float32 graphs that any CPU or GPU can run.

AMP wraps the `mx.sym` functions at trace time, so a `SymbolBlock` (GluonCV builds ResNet-50's
`FeatureExpander` as one, before AMP is on) keeps its float32 graph: for the pass, its graph is
converted with `amp.convert_symbol`, which casts by the same operator lists."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.contrib import amp
from mxnet.contrib.amp import amp as amp_state

from ssd_sagemaker.cpu_features import cpu_has_bfloat16
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.training.agreement import (
    Agreement,
    Arithmetic,
    LossFunction,
    check_agreement,
    training_pass,
)

LOG = logging.getLogger(__name__)

# `auto` uses bfloat16 on CPU only for the bases where it was measured to pay
# (`Backbone.bfloat16_pays_on_cpu`), and only on one host:
# bfloat16 across hosts has had only a few test runs (the one blow-up seen there, a loss of
# 6.7e14 at step 2, then recurred in float32: the kvstore initialisation race fixed in
# `distributed.initialise_kvstore`); distributed CPU jobs use it when `precision=bfloat16` asks.


def resolve_precision(requested: str, base_network: str, contexts: Sequence[mx.Context],
                      kv_store: str | None, bfloat16_cpu: bool | None = None) -> str:
    """The arithmetic training will use: `requested` checked against the hardware, or for
    `auto` the fastest choice measured to be safe. float16 relies on dynamic loss scaling,
    which needs the update on the worker: not possible with dist_async (servers update)."""
    on_gpu = contexts[0].device_type == "gpu"
    if bfloat16_cpu is None:
        bfloat16_cpu = cpu_has_bfloat16()
    if requested == "auto":
        if on_gpu:
            return "float16" if kv_store != "dist_async" else "float32"
        distributed = kv_store is not None and kv_store.startswith("dist")
        pays = BACKBONES[base_network].bfloat16_pays_on_cpu and bfloat16_cpu
        return "bfloat16" if pays and not distributed else "float32"
    if requested == "bfloat16" and (on_gpu or not bfloat16_cpu):
        where = "on GPUs" if on_gpu else "on this CPU (no avx512_bf16 or amx_bf16 instructions)"
        raise ClientError(f"precision=bfloat16 is not supported {where}; use precision=auto "
                          f"(picks what the hardware runs fast) or float32.")
    if requested == "float16":
        if not on_gpu:
            raise ClientError("precision=float16 needs a GPU (this job runs on the CPU); use "
                              "precision=auto or bfloat16 on CPUs that support it.")
        if kv_store == "dist_async":
            raise ClientError("precision=float16 cannot be used with kv_store=dist_async: the "
                              "servers apply the updates, so overflowing float16 gradients "
                              "cannot be skipped; use kv_store=dist_sync or precision=float32.")
    return requested


def mixed_precision(requested: str, resolved: str, trainer: gluon.Trainer) -> MixedPrecision:
    """The run's MixedPrecision: a reduced precision that `auto` chose (float16 on a GPU,
    bfloat16 on a CPU with the instructions) must first prove itself on the first batch; one
    the user asked for is taken as asked. (bfloat16 on an AMD EPYC with avx512_bf16: ResNet-50's
    first-step losses were 3.2-6.7 % off float32's, VGG-16's within 2 %.)"""
    return MixedPrecision(resolved, trainer,
                          unproven=requested == "auto" and resolved in ("float16", "bfloat16"))


def _operator_namespaces() -> list:
    """Every module object whose functions `amp.init` replaces."""
    namespaces = []
    for module in (mx.symbol, mx.ndarray):
        namespaces += [module, module.op, module._internal]
        namespaces += [getattr(module, prefix[1:-1]) for prefix in mx.base._OP_NAME_PREFIX_LIST]
    return namespaces


class _WithoutAmpGreeting(logging.Filter):
    """`amp.init` logs "Using AMP" on the root logger: once per epoch here, and said once by
    MixedPrecision already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Using AMP"


@contextlib.contextmanager
def _amp_installed(dtype: str) -> Iterator[None]:
    namespaces = [(space, dict(vars(space))) for space in _operator_namespaces()]
    flags = {name: getattr(amp_state, name)
             for name in ("_amp_initialized", "_amp_loss_scale_initialized", "_loss_scaler")}
    quiet = _WithoutAmpGreeting()
    logging.getLogger().addFilter(quiet)
    try:
        amp.init(target_dtype=dtype)
    finally:
        logging.getLogger().removeFilter(quiet)
    try:
        yield
    finally:
        for space, functions in namespaces:
            for name, function in functions.items():
                if vars(space).get(name) is not function:
                    setattr(space, name, function)
        for name, value in flags.items():
            setattr(amp_state, name, value)


def _symbol_blocks(block: gluon.Block) -> Iterator[gluon.SymbolBlock]:
    """The SymbolBlocks in `block`'s tree (a SymbolBlock's graph holds its whole subtree)."""
    if isinstance(block, gluon.SymbolBlock):
        yield block
        return
    for child in block._children.values():
        yield from _symbol_blocks(child)


def _forget_traces(block: gluon.Block) -> None:
    """Drop every cached graph in `block`'s tree, so the next call traces anew."""
    if isinstance(block, gluon.HybridBlock):
        block._clear_cached_op()
    for child in block._children.values():
        _forget_traces(child)


@contextlib.contextmanager
def _symbol_blocks_converted(net: gluon.Block | None, dtype: str) -> Iterator[None]:
    """Each SymbolBlock of `net` traces its graph converted to `dtype` (same parameters, the
    casts `amp.init` would have put there); the float32 graphs come back afterwards."""
    originals = [(block, block._cached_graph) for block in
                 (_symbol_blocks(net) if net is not None else ())]
    for block, (inputs, graph) in originals:
        block._cached_graph = (inputs, amp.convert_symbol(
            graph, target_dtype=dtype, data_names=[symbol.name for symbol in inputs]))
    if originals:
        _forget_traces(net)
    try:
        yield
    finally:
        for block, cached_graph in originals:
            block._cached_graph = cached_graph
        if originals:
            _forget_traces(net)


class MixedPrecision:
    """Enter `training()` around each training pass: inside, networks trace in `precision`
    and the yielded function does the backward pass. Validation and export run outside, in
    float32 (MXNet AMP also cannot trace GluonCV's inference graph: its `arange` breaks), so
    the reported mAP is the exported model's. float16 keeps one dynamic loss scale for the
    whole run and lets the Trainer skip the steps whose gradients overflow.

    `unproven`: the precision is `auto`'s float16, taken only once `settle` has seen it agree
    with float32 on the first batch (else the run trains in float32, with a warning)."""

    def __init__(self, precision: str, trainer: gluon.Trainer, unproven: bool = False):
        self.precision = precision
        self._trainer = trainer
        self._loss_scaler = None
        self._unproven = unproven
        self.agreement: Agreement | None = None
        if precision != "float32" and not unproven:
            LOG.info("mixed precision: convolutions in %s while training; weights, updates, "
                     "validation and the artifact in float32", precision)

    def settle(self, net: gluon.HybridBlock, batch: Sequence[mx.nd.NDArray],
               contexts: Sequence[mx.Context], loss_fn: LossFunction,
               arithmetic: Arithmetic | None = None) -> None:
        """Before the first training pass: prove an unproven precision on `batch` (one
        forward/backward in it and in float32) and keep it only if they agree. `arithmetic`:
        how a pass is traced in a precision (default: as `training` does, with AMP)."""
        if not self._unproven:
            return
        self._unproven = False
        self.agreement = check_agreement(self.precision, training_pass(
            net, batch, contexts, loss_fn,
            arithmetic or functools.partial(self.pass_arithmetic, net)))
        if self.agreement.agrees:
            LOG.info("precision=auto: %s; mixed precision: convolutions in %s while training; "
                     "weights, updates, validation and the artifact in float32",
                     self.agreement.describe(), self.precision)
        else:
            LOG.warning("precision=auto: %s; training in float32 instead",
                        self.agreement.describe())
            self.precision = "float32"

    @contextlib.contextmanager
    def pass_arithmetic(self, net: gluon.Block | None, precision: str
                        ) -> Iterator[Callable[[Sequence[mx.nd.NDArray]], None]]:
        """`precision`'s graph for one pass of `net`, with a plain backward (no loss scale)."""
        if precision == "float32":
            yield autograd.backward
            return
        with _amp_installed(precision), _symbol_blocks_converted(net, precision):
            yield autograd.backward

    @contextlib.contextmanager
    def training(self, net: gluon.Block | None = None
                 ) -> Iterator[Callable[[Sequence[mx.nd.NDArray]], None]]:
        """`net`: the network trained in the pass; its SymbolBlocks are converted too."""
        with self.pass_arithmetic(net, self.precision):
            if self.precision != "float16":
                yield autograd.backward
                return
            trainer = self._trainer
            amp.init_trainer(trainer)
            if self._loss_scaler is None:
                self._loss_scaler = trainer._amp_loss_scaler
            trainer._amp_loss_scaler = self._loss_scaler

            def scaled_backward(losses: Sequence[mx.nd.NDArray]) -> None:
                with amp.scale_loss(losses, trainer) as scaled:
                    autograd.backward(scaled)

            try:
                yield scaled_backward
            finally:  # a float32 step (none is planned) must not be unscaled
                trainer._amp_loss_scaler = None
                trainer._scale = trainer._amp_original_scale
