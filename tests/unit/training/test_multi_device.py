"""Several devices on one host (mx.cpu(i) contexts stand in for GPUs, through the same code):
how a batch is split, that the `device` kvstore sums the devices' gradients into the update one
device would make, and that a batch with fewer images than devices (mini_batch_size below the
GPU count, or an epoch's last batch) trains instead of failing on an empty slice."""

from __future__ import annotations

import io

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from ssd_sagemaker.devices import split_batch
from ssd_sagemaker.environment import ResourceConfig
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.selftest import CLASSES, seeded_batch
from ssd_sagemaker.training.distributed import choose_kv_store
from ssd_sagemaker.training.loop import Learner, train_one_epoch
from ssd_sagemaker.training.precision import MixedPrecision

pytestmark = pytest.mark.slow  # trains a ResNet-50 SSD for a step on up to three devices

SHAPE = 128  # ResNet-50 SSD builds at any size; small keeps the steps fast


@pytest.mark.parametrize("images, devices, sizes", [
    (32, 8, [4] * 8), (10, 4, [3, 3, 2, 2]), (5, 3, [2, 2, 1]), (2, 3, [1, 1]), (1, 8, [1])])
def test_a_batch_is_split_as_evenly_as_possible_over_at_most_one_device_per_image(
        images, devices, sizes):
    contexts = [mx.cpu(i) for i in range(devices)]
    parts = split_batch(mx.nd.arange(images).reshape((images, 1)), contexts)
    assert [part.shape[0] for part in parts] == sizes
    assert [part.context for part in parts] == contexts[:len(sizes)]
    assert np.concatenate([part.asnumpy() for part in parts]).ravel().tolist() == list(
        range(images))


def test_one_host_with_several_devices_aggregates_with_the_device_kvstore():
    one_host = ResourceConfig(current_host="algo-1", hosts=("algo-1",))
    assert choose_kv_store(one_host, None, 4) == "device"
    assert choose_kv_store(one_host, "dist_sync", 4) == "device"  # ignored on one host
    assert choose_kv_store(one_host, None, 1) is None


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    mx.random.seed(5)
    net = build_network("resnet-50", SHAPE, CLASSES)
    batch = seeded_batch(net, SHAPE, 2)
    weights = tmp_path_factory.mktemp("multi") / "initial.params"
    net.save_parameters(str(weights))
    return batch, weights


def _step(batch, weights, contexts):
    net = build_network("resnet-50", SHAPE, CLASSES)
    net.collect_params().reset_ctx(contexts)
    net.load_parameters(str(weights), ctx=contexts)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01},
                            kvstore="device" if len(contexts) > 1 else None)
    result = train_one_epoch(Learner(net, trainer, contexts, MixedPrecision("float32", trainer)),
                             [batch], 0, MetricReporter("h", io.StringIO()))
    params = {name.split("_", 1)[1]: [p.asnumpy() for p in param.list_data()]
              for name, param in net.collect_params().items() if param.grad_req != "null"}
    return result, params


def test_fewer_images_than_devices_train_as_the_devices_with_images_do(start):
    """2 images on 3 devices: the third gets none and contributes a zero gradient; every
    device's copy of the weights (the idle one's too) gets the update that 2 devices make.
    (Not one device's: ResNet-50's BatchNorm normalises over each device's own slice, and its
    running statistics, which no gradient updates, are kept per device.)"""
    batch, weights = start
    one, params_one = _step(batch, weights, [mx.cpu(0), mx.cpu(1)])
    three, params_three = _step(batch, weights, [mx.cpu(0), mx.cpu(1), mx.cpu(2)])
    assert three.images == one.images == 2
    assert three.cross_entropy == pytest.approx(one.cross_entropy, rel=1e-4)
    assert three.smooth_l1 == pytest.approx(one.smooth_l1, rel=1e-4)
    moved = 0
    for name, (expected, _) in params_one.items():
        copies = params_three[name]
        assert len(copies) == 3
        for copy in copies:  # the idle device's copy too
            np.testing.assert_allclose(copy, expected, rtol=1e-3, atol=1e-5, err_msg=name)
        moved += not np.allclose(expected, _initial(weights)[name])
    assert moved > 30


def _initial(weights, cache={}):  # noqa: B006 - read once per test module
    if not cache:
        net = build_network("resnet-50", SHAPE, CLASSES)
        net.load_parameters(str(weights))
        cache.update({name.split("_", 1)[1]: param.data().asnumpy()
                      for name, param in net.collect_params().items()})
    return cache
