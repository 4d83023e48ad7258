"""backbones.py: one record per base network is all the code needs to know about it — a new
record is usable by the hyperparameters, the builder, freeze_layer_pattern, precision and the
`fetch-weights` without touching them."""

import dataclasses

import mxnet as mx
import pytest
from gluoncv.model_zoo.model_store import short_hash

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters
from ssd_sagemaker.model.backbones import BACKBONES, VGG16
from ssd_sagemaker.model.layers import freeze_layers
from ssd_sagemaker.model.network import build_network, pretrained_base_file
from ssd_sagemaker.training.precision import resolve_precision


@pytest.mark.parametrize("name", list(BACKBONES))
def test_weights_file_is_the_one_gluoncv_model_store_writes(name):
    backbone = BACKBONES[name]
    expected = f"{backbone.model_store_name}-{short_hash(backbone.model_store_name)}.params"
    assert backbone.weights_file == expected


def test_base_network_choices_are_the_registry():
    hp = parse_hyperparameters({"num_classes": "1", "num_training_samples": "4",
                                "base_network": "resnet-50"})
    assert hp.base_network == "resnet-50"
    with pytest.raises(ClientError) as error:
        parse_hyperparameters({"num_classes": "1", "num_training_samples": "4",
                               "base_network": "resnet-18"})
    for name in BACKBONES:
        assert name in str(error.value)


def test_a_new_backbone_is_one_registry_entry(monkeypatch, tmp_path):
    """A third base registered under a new name builds, freezes by documented name, gets its
    own precision verdict and its own weights file name — no other module knows about it."""
    third = dataclasses.replace(VGG16, name="vgg-16-fp32", bfloat16_pays_on_cpu=False,
                                weights_file="third-00000000.params")
    monkeypatch.setitem(BACKBONES, third.name, third)

    net = build_network(third.name, 300, ["a"])
    assert freeze_layers(net, third.name, "^conv1_") == ["conv1_1", "conv1_2"]
    assert resolve_precision("auto", third.name, [mx.cpu()], None, bfloat16_cpu=True) == "float32"
    assert resolve_precision("auto", "vgg-16", [mx.cpu()], None, bfloat16_cpu=True) == "bfloat16"
    with pytest.raises(ClientError, match="third-00000000.params"):
        pretrained_base_file(third.name, tmp_path)
