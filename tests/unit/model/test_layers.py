"""layers.py: documented layer names map onto GluonCV's and freeze exactly what they name."""

import logging
import subprocess
import sys

import pytest

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import VGG16_CONVS
from ssd_sagemaker.model.layers import base_layers, freeze_layers
from ssd_sagemaker.model.network import build_network


@pytest.fixture(scope="module")
def vgg():
    return build_network("vgg-16", 300, ["a"])


@pytest.fixture(scope="module")
def resnet():
    return build_network("resnet-50", 300, ["a"])


def _frozen_params(net):
    """Frozen base parameters (init_scale is a constant GluonCV never trains)."""
    return sorted(n for n, p in net.features.collect_params().items()
                  if p.grad_req == "null" and not n.endswith("init_scale"))


def test_vgg_documented_names(vgg):
    names = list(dict.fromkeys(layer.documented for layer in base_layers(vgg, "vgg-16")))
    assert names == list(VGG16_CONVS) + ["fc6", "fc7"]
    by_native = {layer.native.split("_", 1)[1]: layer.documented
                 for layer in base_layers(vgg, "vgg-16")}
    assert by_native["conv0"] == "conv1_1" and by_native["conv4"] == "conv3_1"
    assert by_native["conv12"] == "conv5_3" and by_native["dilated_conv1"] == "fc7"


def test_documented_example_freezes_exactly_the_first_two_vgg_blocks():
    net = build_network("vgg-16", 300, ["a"])
    frozen = freeze_layers(net, "vgg-16", r"^(conv1_|conv2_).*")
    assert frozen == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    suffixes = sorted(n.split("vggatrousextractor")[1].split("_", 1)[1]
                      for n in _frozen_params(net))
    assert suffixes == sorted(f"conv{i}_{k}" for i in range(4) for k in ("weight", "bias"))


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_resnet_documented_names(resnet):
    layers = {layer.native.split("_", 1)[1]: layer.documented
              for layer in base_layers(resnet, "resnet-50")}
    assert layers["conv0"] == "conv0" and layers["batchnorm0"] == "bn0"
    assert layers["stage1_conv0"] == "stage1_unit1_conv1"
    assert layers["stage1_conv3"] == "stage1_unit1_sc"
    assert layers["stage1_conv4"] == "stage1_unit2_conv1"
    assert layers["stage3_conv18"] == "stage3_unit6_conv3"
    assert layers["stage4_batchnorm9"] == "stage4_unit3_bn3"
    assert len(set(layers.values())) == 102  # conv0, bn0, 16 units x 6, 4 shortcuts


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_resnet_pattern_on_documented_and_native_names():
    net = build_network("resnet-50", 300, ["a"])
    assert freeze_layers(net, "resnet-50", r"^stage1_unit1_conv") == [
        "stage1_unit1_conv1", "stage1_unit1_conv2", "stage1_unit1_conv3"]
    net = build_network("resnet-50", 300, ["a"])
    assert freeze_layers(net, "resnet-50", r"resnetv1\d+_conv0$") == ["conv0"]


def test_no_match_warns_with_available_names(vgg, caplog):
    with caplog.at_level(logging.WARNING):
        assert freeze_layers(vgg, "vgg-16", "^nothing") == []
    assert "matches no layer" in caplog.text and "conv5_3, fc6, fc7" in caplog.text
    assert _frozen_params(vgg) == []


def test_invalid_regex_is_a_client_error(vgg):
    with pytest.raises(ClientError, match="freeze_layer_pattern '\\(conv' is not a valid"):
        freeze_layers(vgg, "vgg-16", "(conv")


def test_lookaround_pattern_is_a_client_error_naming_the_key(vgg):
    with pytest.raises(ClientError, match=r"freeze_layer_pattern '\^\(\?!conv5\)' is not a valid "
                                          r"regular expression in RE2 syntax: regex error: "
                                          r"invalid perl operator"):
        freeze_layers(vgg, "vgg-16", "^(?!conv5)")


CATASTROPHIC = r"""
import sys, time
from ssd_sagemaker.model.layers import freeze_layers
from ssd_sagemaker.model.network import build_network
net = build_network(sys.argv[1], 300, ["a"])
start = time.perf_counter()
print(freeze_layers(net, sys.argv[1], r"(\w+)+!"), round(time.perf_counter() - start, 3))
"""


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
@pytest.mark.parametrize("base", ["vgg-16", "resnet-50"])
def test_backtracking_pattern_cannot_hang_the_job(base):
    """`(\\w+)+!` takes Python's re about an hour on `vggatrousextractor0_dilated_conv0` (time
    doubles per character); RE2 answers at once. In a subprocess, so a regression fails
    instead of hanging."""
    done = subprocess.run([sys.executable, "-c", CATASTROPHIC, base], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frozen, seconds = done.stdout.split()
    assert frozen == "[]" and float(seconds) < 1.0
