"""precision.py: which arithmetic each hardware gets, clear errors for impossible requests, AMP
confined to the training pass, and float16 loss scaling that unscales and skips overflows."""

import collections
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.contrib.amp import amp as amp_state

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training.precision import MixedPrecision, cpu_has_bfloat16, resolve_precision

CPU, GPU = [mx.cpu()], [mx.gpu(0)]


def test_bfloat16_support_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl\n")
    assert cpu_has_bfloat16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert not cpu_has_bfloat16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_bfloat16(cpuinfo)
    assert not cpu_has_bfloat16(tmp_path / "missing")


@pytest.mark.parametrize("base, contexts, kv_store, bfloat16_cpu, expected", [
    ("vgg-16", CPU, None, True, "bfloat16"),
    ("vgg-16", CPU, "local", True, "bfloat16"),
    ("vgg-16", CPU, "dist_sync", True, "float32"),  # see Backbone.bfloat16_pays_on_cpu
    ("vgg-16", CPU, "dist_async", True, "float32"),
    ("vgg-16", CPU, None, False, "float32"),
    ("resnet-50", CPU, None, True, "bfloat16"),  # once its SymbolBlock base is converted
    ("vgg-16", GPU, None, False, "float16"),
    ("resnet-50", GPU, "dist_sync", False, "float16"),
    ("vgg-16", GPU, "dist_async", False, "float32"),  # servers update: no loss scaling
])
def test_auto_picks_the_fast_arithmetic_the_hardware_supports(base, contexts, kv_store,
                                                               bfloat16_cpu, expected):
    assert resolve_precision("auto", base, contexts, kv_store, bfloat16_cpu) == expected


@pytest.mark.parametrize("requested, contexts, kv_store, bfloat16_cpu", [
    ("float32", CPU, None, True), ("float32", GPU, "dist_async", False),
    ("bfloat16", CPU, None, True), ("bfloat16", CPU, "dist_sync", True),
    ("float16", GPU, "dist_sync", False),
])
def test_an_explicit_supported_choice_is_kept(requested, contexts, kv_store, bfloat16_cpu):
    assert resolve_precision(requested, "resnet-50", contexts, kv_store,
                             bfloat16_cpu) == requested


@pytest.mark.parametrize("requested, contexts, kv_store, bfloat16_cpu, words", [
    ("bfloat16", CPU, None, False, "no avx512_bf16 or amx_bf16"),
    ("bfloat16", GPU, None, False, "on GPUs"),
    ("float16", CPU, None, True, "needs a GPU"),
    ("float16", GPU, "dist_async", False, "kv_store=dist_async"),
])
def test_an_impossible_choice_is_a_client_error_naming_it(requested, contexts, kv_store,
                                                          bfloat16_cpu, words):
    with pytest.raises(ClientError) as error:
        resolve_precision(requested, "vgg-16", contexts, kv_store, bfloat16_cpu)
    assert f"precision={requested}" in str(error.value) and words in str(error.value)


def _conv_net() -> gluon.HybridBlock:
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3, in_channels=3), gluon.nn.Activation("relu"))
    net.initialize()
    return net


def _graph(net: gluon.HybridBlock) -> str:
    return net(mx.sym.var("data")).tojson(remove_amp_cast=False)  # True hides the casts


def test_amp_lives_only_inside_the_training_pass(caplog):
    net = _conv_net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    convolution, nd_convolution = mx.sym.Convolution, mx.nd.Convolution
    flags = (amp_state._amp_initialized, amp_state._loss_scaler)
    caplog.set_level("INFO")
    mixed = MixedPrecision("bfloat16", trainer)
    for _ in range(2):  # every epoch enters and leaves again
        with mixed.training() as backward:
            assert backward is autograd.backward
            inside = _graph(net)
            assert amp_state._amp_initialized and mx.sym.Convolution is not convolution
        assert '"dtype": "bfloat16"' in inside and "amp_cast" in inside
        assert mx.sym.Convolution is convolution and mx.nd.Convolution is nd_convolution
        assert (amp_state._amp_initialized, amp_state._loss_scaler) == flags
        assert "amp_cast" not in _graph(net)  # validation and export trace float32
    messages = [record.getMessage() for record in caplog.records]
    assert "Using AMP" not in messages  # MXNet's greeting, once per epoch, is dropped
    assert sum("mixed precision: convolutions in bfloat16" in m for m in messages) == 1


def test_float32_changes_nothing():
    net = _conv_net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    with MixedPrecision("float32", trainer).training() as backward:
        assert backward is autograd.backward
        assert not amp_state._amp_initialized and "amp_cast" not in _graph(net)


class _Scale(gluon.HybridBlock):
    """x * w: ops that run on the CPU in any dtype, so float16's loss scaling (normally on a
    GPU) can be exercised here."""

    def __init__(self):
        super().__init__()
        self.w = self.params.get("w", shape=(3,), init=mx.init.Constant(0.5))

    def hybrid_forward(self, F, x, w):
        return F.broadcast_mul(x, w)


def test_float16_scales_the_loss_unscales_the_update_and_skips_overflow():
    net = _Scale()
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    mixed = MixedPrecision("float16", trainer)
    x = mx.nd.ones((4, 3))
    moves, scales = [], []
    for factor in (1.0, float("inf"), 1.0):
        before = net.w.data().asnumpy()
        with mixed.training() as backward:
            assert backward is not autograd.backward
            with autograd.record():
                backward([(net(x) * factor).sum()])
            trainer.step(1)
            scales.append(trainer._amp_loss_scaler.loss_scale)
        moves.append(net.w.data().asnumpy() - before)
        assert trainer._amp_loss_scaler is None and trainer._scale == 1.0
    # d(sum x*w)/dw = 4 per weight, lr 0.1: the update is the unscaled one...
    np.testing.assert_allclose(moves[0], [-0.4] * 3, rtol=1e-6)
    np.testing.assert_allclose(moves[2], [-0.4] * 3, rtol=1e-6)
    # ...an overflowing step changes nothing, and the one loss scale of the run is lowered.
    np.testing.assert_array_equal(moves[1], [0.0] * 3)
    assert scales[2] < scales[0] and mixed._loss_scaler.loss_scale == scales[2]


def _convolution_dtypes(net: gluon.HybridBlock) -> collections.Counter:
    """How many convolutions of `net`'s training graph, traced now, run in each dtype (the
    output dtype type inference gives each Convolution node)."""
    with autograd.train_mode():
        graph = mx.sym.Group(net(mx.sym.var("data")))
    operators = {node["name"]: node["op"]
                 for node in json.loads(graph.tojson(remove_amp_cast=False))["nodes"]}
    internals = graph.get_internals()
    _, types, _ = internals.infer_type(data="float32")
    return collections.Counter(
        np.dtype(dtype).names[0] if np.dtype(dtype).names else np.dtype(dtype).name
        for name, dtype in zip(internals.list_outputs(), types)
        if name.endswith("_output") and operators.get(name[:-len("_output")]) == "Convolution")


@pytest.fixture(scope="module")
def resnet50_ssd():
    return build_network("resnet-50", 300, ["a", "b"])


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_symbol_block_backbone_traces_every_convolution_in_the_reduced_dtype(resnet50_ssd,
                                                                               precision):
    # GluonCV's FeatureExpander (ResNet-50 + SSD's extra layers) is a SymbolBlock built before
    # AMP is on: AMP alone casts only the 12 predictor convolutions, not its 61.
    net = resnet50_ssd
    assert isinstance(net.features, gluon.SymbolBlock)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    parameters = dict(net.collect_params().items())
    with MixedPrecision(precision, trainer).training(net):
        inside = _convolution_dtypes(net)
    assert inside == {precision: 73}
    assert _convolution_dtypes(net) == {"float32": 73}  # validation and export trace float32
    assert dict(net.collect_params().items()) == parameters  # the same Parameter objects
