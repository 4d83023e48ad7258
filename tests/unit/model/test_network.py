"""network.py: SSD built for each base and image shape with anchors that tile the image;
pretrained base weights found in (only) the local cache and really loaded."""

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.model.network import build_network, model_cache_dir, pretrained_base_file


def _train_forward(net, shape):
    with mx.autograd.train_mode():
        return net(mx.nd.zeros((1, 3, shape, shape)))


@pytest.mark.parametrize("base, shape, maps", [
    ("vgg-16", 300, [38, 19, 10, 5, 3, 1]),
    ("vgg-16", 384, [48, 24, 12, 6, 4, 2]),
    ("vgg-16", 512, [64, 32, 16, 8, 4, 2, 1]),
    ("resnet-50", 300, [19, 10, 5, 3, 2, 1]),
    ("resnet-50", 384, [24, 12, 6, 3, 2, 1]),
    ("resnet-50", 512, [32, 16, 8, 4, 2, 1]),
])
@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_feature_maps_and_anchors_tile_the_image(base, shape, maps):
    net = build_network(base, shape, ["a", "b"])
    with mx.autograd.predict_mode():
        features = net.features(mx.nd.zeros((1, 3, shape, shape)))
    assert [f.shape[2] for f in features] == maps
    cls_preds, box_preds, anchors = _train_forward(net, shape)
    per_cell = [len(g._sizes) + len(g._ratios) - 1 for g in net.anchor_generators]
    expected = sum(m * m * k for m, k in zip(maps, per_cell))
    assert anchors.shape == (1, expected, 4)
    assert cls_preds.shape == (1, expected, 3) and box_preds.shape == (1, expected, 4)
    # Off the presets' sizes, anchor centres (pixels) run from step/2 to shape - step/2 on each
    # map: the image is tiled exactly. (GluonCV's 300 preset uses its own steps, 8 … 300.)
    if shape in (300, 512) and not (base == "resnet-50" and shape == 300):
        return
    centres = anchors[0].asnumpy()
    offset = 0
    for size, k in zip(maps, per_cell):
        layer = centres[offset:offset + size * size * k].reshape(size, size, k, 4)
        step = shape / size
        assert layer[0, 0, 0, 0] == pytest.approx(step / 2, rel=1e-4)
        assert layer[-1, -1, 0, 0] == pytest.approx(shape - step / 2, rel=1e-4)
        offset += size * size * k


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_gluoncv_preset_anchor_counts():
    assert _train_forward(build_network("vgg-16", 300, ["a"]), 300)[2].shape[1] == 8732
    assert _train_forward(build_network("vgg-16", 512, ["a"]), 512)[2].shape[1] == 24564


def test_model_cache_follows_mxnet_home(tmp_path):
    assert model_cache_dir({"MXNET_HOME": str(tmp_path)}) == tmp_path / "models"
    assert model_cache_dir({}).parts[-2:] == (".mxnet", "models")


@pytest.mark.parametrize("base", ["vgg-16", "resnet-50"])
def test_missing_pretrained_weights_say_where_and_how_to_avoid(tmp_path, base):
    with pytest.raises(ClientError) as error:
        pretrained_base_file(base, tmp_path)
    message = str(error.value)
    assert str(tmp_path / BACKBONES[base].weights_file) in message
    assert "use_pretrained_model=0" in message


def _params(block):
    return {k: v.data().asnumpy() for k, v in block._collect_params_with_prefix().items()}


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_vgg_pretrained_base_weights_are_loaded(tmp_path):
    source = vgg16_atrous_300(pretrained=False)
    source.initialize(mx.init.Normal(0.5))
    source(mx.nd.zeros((1, 3, 300, 300)))
    path = tmp_path / BACKBONES["vgg-16"].weights_file
    source.save_parameters(str(path))
    assert pretrained_base_file("vgg-16", tmp_path) == path

    net = build_network("vgg-16", 300, ["a"], pretrained_file=path)
    expected, loaded = _params(source), _params(net.features)
    assert expected.keys() == loaded.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_resnet_pretrained_base_weights_are_loaded(tmp_path):
    classifier = get_model("resnet50_v1", pretrained=False)
    classifier.initialize(mx.init.Normal(0.5))
    classifier(mx.nd.zeros((1, 3, 64, 64)))
    path = tmp_path / BACKBONES["resnet-50"].weights_file
    classifier.save_parameters(str(path))

    net = build_network("resnet-50", 300, ["a"], pretrained_file=path)
    source = {k.split("_", 1)[1]: v.data().asnumpy()
              for k, v in classifier.collect_params().items()}
    checked = 0
    for name, param in net.features.collect_params().items():
        if "_resnetv1" in name:
            key = name.split("_resnetv1", 1)[1].split("_", 1)[1]
            np.testing.assert_array_equal(param.data().asnumpy(), source[key], err_msg=name)
            checked += 1
    assert checked >= 260  # every conv / batch-norm parameter of the ResNet-50 base


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_a_wrong_weights_file_is_a_client_error(tmp_path):
    path = tmp_path / BACKBONES["resnet-50"].weights_file
    path.write_bytes(b"not a params file")
    with pytest.raises(ClientError, match="cannot be loaded into the resnet-50 base"):
        build_network("resnet-50", 300, ["a"], pretrained_file=path)
