"""agreement.py and MixedPrecision.settle: `precision=auto`'s float16 is kept only when one
forward/backward of the first batch agrees with float32. MXNet has no float16 convolution on
the CPU ("FP16 gemm on cpu not implemented", measured), so these passes run a small SSD-shaped
network whose float16 is emulated by rounding every activation through float16 (a cast, which
the CPU runs): its range (65504) and its 11-bit mantissa are float16's."""

from __future__ import annotations

import contextlib
import io
import logging

import mxnet as mx
import numpy as np
import pytest
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon

from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.training.agreement import (
    GRADIENT_TOLERANCE,
    LOSS_TOLERANCE,
    PassResult,
    check_agreement,
    compare,
    training_pass,
)
from ssd_sagemaker.training.loop import Learner, train_one_epoch
from ssd_sagemaker.training.precision import MixedPrecision, mixed_precision, resolve_precision

GPU = [mx.gpu(0)]  # a fake device list: resolve_precision only reads its type


class _TinySsd(gluon.HybridBlock):
    """Class and box predictions for 8x8 anchors from a small conv stack, with BatchNorm (its
    running statistics must survive the check). `float16`: round activations through float16."""

    def __init__(self, weight_scale: float = 1.0):
        super().__init__()
        self.float16 = False
        with self.name_scope():
            self.body = gluon.nn.Conv2D(8, 3, padding=1, in_channels=3,
                                        weight_initializer=mx.init.Uniform(0.3 * weight_scale))
            self.norm = gluon.nn.BatchNorm(in_channels=8)
            self.cls = gluon.nn.Conv2D(3, 3, padding=1, in_channels=8)
            self.box = gluon.nn.Conv2D(4, 3, padding=1, in_channels=8)

    def _round(self, F, x):
        return F.cast(F.cast(x, "float16"), "float32") if self.float16 else x

    def hybrid_forward(self, F, x):
        x = self._round(F, self.body(self._round(F, x)))
        x = self._round(F, F.relu(self.norm(x)))
        cls = self._round(F, self.cls(x)).transpose((0, 2, 3, 1)).reshape((0, -1, 3))
        box = self._round(F, self.box(x)).transpose((0, 2, 3, 1)).reshape((0, -1, 4))
        return cls, box


def _net(weight_scale: float = 1.0) -> _TinySsd:
    mx.random.seed(3)
    net = _TinySsd(weight_scale)
    net.initialize()
    return net


def _batch(pixel_scale: float = 1.0):
    rng = np.random.default_rng(5)
    images = mx.nd.array(rng.uniform(-1, 1, (2, 3, 8, 8)) * pixel_scale)
    cls_targets = mx.nd.array(rng.integers(0, 3, (2, 64)))
    box_targets = mx.nd.array(rng.normal(0, 1, (2, 64, 4)))
    return images, cls_targets, box_targets


def _emulated(net: _TinySsd):
    """The `arithmetic` of the check for the tiny net: float16 rounds every activation."""

    @contextlib.contextmanager
    def arithmetic(precision: str):
        net.float16 = precision == "float16"
        try:
            yield autograd.backward
        finally:
            net.float16 = False

    return arithmetic


def _check(net, batch):
    return check_agreement("float16", training_pass(net, batch, [mx.cpu()], SSDMultiBoxLoss(),
                                                    _emulated(net)))


def test_float16_that_rounds_within_its_precision_agrees_and_moves_nothing():
    net, batch = _net(), _batch()
    before = {name: param.data().asnumpy() for name, param in net.collect_params().items()}
    verdict = _check(net, batch)
    assert verdict.agrees, verdict.describe()
    # measured: ~1e-3 of float16 rounding, far inside the tolerances, but not zero
    assert 0 < verdict.loss_difference < LOSS_TOLERANCE / 10
    assert 0 < verdict.gradient_difference < GRADIENT_TOLERANCE / 10
    after = {name: param.data().asnumpy() for name, param in net.collect_params().items()}
    for name, value in before.items():  # weights and BatchNorm's running statistics
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert "agrees with float32 on the first batch: losses differ by" in verdict.describe()


def test_float32_against_itself_differs_by_nothing():
    net, batch = _net(), _batch()
    run_pass = training_pass(net, batch, [mx.cpu()], SSDMultiBoxLoss(), _emulated(net))
    verdict = compare("float32", run_pass("float32", 1.0), run_pass("float32", 1.0))
    assert verdict.agrees and verdict.loss_difference == 0 and verdict.gradient_difference == 0


def test_a_float16_forward_that_overflows_disagrees_naming_why():
    # activations of ~1e6 exceed float16's 65504: inf in float16, finite in float32
    net, batch = _net(weight_scale=100.0), _batch(pixel_scale=1000.0)
    verdict = _check(net, batch)
    assert not verdict.agrees
    assert "its losses are not finite" in verdict.reason and "overflows" in verdict.reason
    assert "disagrees with float32 on the first batch" in verdict.describe()


def test_gradients_that_overflow_at_every_loss_scale_disagree():
    reference = PassResult((1.0, 1.0), {"w": np.ones(3)})
    scales = []

    def run_pass(precision, loss_scale):
        scales.append((precision, loss_scale))
        if precision == "float32":
            return reference
        return PassResult((1.0, 1.0), {"w": np.array([1.0, np.inf, 1.0])}, loss_scale)

    verdict = check_agreement("float16", run_pass)
    assert scales == [("float32", 1.0), ("float16", 65536.0), ("float16", 256.0),
                      ("float16", 1.0)]  # as dynamic loss scaling would go down
    assert not verdict.agrees and "gradients are not finite even at loss scale 1" in verdict.reason


def test_a_loss_scale_that_overflows_is_lowered_before_judging():
    def run_pass(precision, loss_scale):
        gradient = np.array([2.0, 1.0]) if loss_scale < 65536 else np.array([np.inf, 1.0])
        return PassResult((1.0, 0.5), {"w": gradient}, loss_scale)

    verdict = check_agreement("float16", run_pass)
    assert verdict.agrees and verdict.gradient_difference == 0


def test_gradients_beyond_the_tolerance_disagree():
    reference = PassResult((1.0, 1.0), {"w": np.array([1.0, 0.0])})
    wrong = PassResult((1.01, 1.0), {"w": np.array([1.0, 0.5])})
    verdict = compare("float16", wrong, reference)
    assert not verdict.agrees and verdict.gradient_difference == pytest.approx(0.5)
    assert "its gradients differ by 5.00e-01, more than 10%" == verdict.reason


def test_autos_bfloat16_on_a_cpu_must_prove_itself_too():
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    resolved = resolve_precision("auto", "resnet-50", [mx.cpu()], None, bfloat16_cpu=True)
    assert resolved == "bfloat16"
    assert mixed_precision("auto", resolved, trainer)._unproven is True
    assert mixed_precision("bfloat16", resolved, trainer)._unproven is False
    assert mixed_precision("auto", "float32", trainer)._unproven is False


@pytest.mark.parametrize("requested, unproven", [("auto", True), ("float16", False)])
def test_only_autos_float16_on_a_gpu_must_prove_itself(requested, unproven):
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    resolved = resolve_precision(requested, "vgg-16", GPU, "dist_sync", False)
    assert resolved == "float16"
    assert mixed_precision(requested, resolved, trainer)._unproven is unproven


@pytest.mark.parametrize("weight_scale, pixel_scale, kept", [(1.0, 1.0, "float16"),
                                                             (100.0, 1000.0, "float32")])
def test_settle_keeps_float16_only_when_it_agrees(caplog, weight_scale, pixel_scale, kept):
    net, batch = _net(weight_scale), _batch(pixel_scale)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    mixed = MixedPrecision("float16", trainer, unproven=True)
    with caplog.at_level(logging.INFO):
        mixed.settle(net, batch, [mx.cpu()], SSDMultiBoxLoss(), _emulated(net))
        mixed.settle(net, batch, [mx.cpu()], SSDMultiBoxLoss(), _emulated(net))  # once only
    assert mixed.precision == kept and mixed.agreement is not None
    records = [r for r in caplog.records if "precision=auto:" in r.getMessage()]
    assert len(records) == 1
    if kept == "float32":
        assert records[0].levelno == logging.WARNING
        assert "float16 disagrees with float32 on the first batch: its losses are not finite" \
            in records[0].getMessage() and "training in float32 instead" in records[0].getMessage()
    else:
        assert records[0].levelno == logging.INFO and "float16 agrees" in records[0].getMessage()


def test_the_loop_settles_on_the_first_batch_and_then_trains_every_batch():
    net = _net(weight_scale=100.0)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.0})
    mixed = MixedPrecision("float16", trainer, unproven=True)
    seen = []
    original = mixed.settle

    def settle(net_, batch, contexts, loss_fn):  # the loop's call, with the tiny net's float16
        seen.append(batch[0].asnumpy())
        original(net_, batch, contexts, loss_fn, _emulated(net))

    mixed.settle = settle  # type: ignore[method-assign]
    batches = [_batch(1000.0), _batch(2.0)]
    result = train_one_epoch(Learner(net, trainer, [mx.cpu()], mixed), batches, 0,
                             MetricReporter("test", io.StringIO()), loss_fn=SSDMultiBoxLoss())
    assert len(seen) == 1 and np.array_equal(seen[0], batches[0][0].asnumpy())
    assert mixed.precision == "float32" and result.images == 4
