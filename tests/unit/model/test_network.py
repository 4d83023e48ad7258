"""network.py: SSD built for each base/shape; pretrained weights found in (only) the cache."""

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.network import (PRETRAINED_BASE_FILES, build_network, model_cache_dir,
                                         pretrained_base_file)


@pytest.mark.parametrize("base, shape, anchors", [
    ("vgg-16", 300, 8732),  # GluonCV's SSD300 anchor count
    ("vgg-16", 512, 24564),  # GluonCV's SSD512 anchor count
])
def test_anchor_counts_match_gluoncv_presets(base, shape, anchors):
    net = build_network(base, shape, ["a", "b"])
    with mx.autograd.train_mode():
        cls_preds, box_preds, anchor_boxes = net(mx.nd.zeros((1, 3, shape, shape)))
    assert anchor_boxes.shape == (1, anchors, 4)
    assert cls_preds.shape == (1, anchors, 3)  # background + 2 classes
    assert box_preds.shape == (1, anchors, 4)


def test_model_cache_follows_mxnet_home(tmp_path):
    assert model_cache_dir({"MXNET_HOME": str(tmp_path)}) == tmp_path / "models"
    assert model_cache_dir({}).parts[-2:] == (".mxnet", "models")


def test_missing_pretrained_weights_say_where_and_how_to_avoid(tmp_path):
    with pytest.raises(ClientError) as error:
        pretrained_base_file("vgg-16", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "vgg16_atrous-4fa2e1ad.params") in message
    assert "use_pretrained_model=0" in message


def test_pretrained_base_weights_are_loaded(tmp_path):
    source = vgg16_atrous_300(pretrained=False)
    source.initialize(mx.init.Normal(0.5))
    source(mx.nd.zeros((1, 3, 300, 300)))
    path = tmp_path / PRETRAINED_BASE_FILES["vgg-16"]
    source.save_parameters(str(path))
    assert pretrained_base_file("vgg-16", tmp_path) == path

    net = build_network("vgg-16", 300, ["a"], pretrained_file=path)
    expected = {k: v.data().asnumpy() for k, v in source._collect_params_with_prefix().items()}
    loaded = {k: v.data().asnumpy() for k, v in net.features._collect_params_with_prefix().items()}
    assert expected.keys() == loaded.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
