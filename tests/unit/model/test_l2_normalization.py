"""l2_normalization.py: VGG's conv4_3 scale as a depthwise convolution computes what GluonCV's
`Normalize` computes, forward and backward, with the same parameter, so checkpoints and
artifacts of either kind load into the other."""

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.vgg_atrous import Normalize, vgg16_atrous_300
from mxnet import autograd

from ssd_sagemaker.model.backbones import VGG16
from ssd_sagemaker.model.l2_normalization import ConvolutionScaledNormalize
from ssd_sagemaker.model.network import build_network


def _forward_backward(block, x, head):
    x = x.copy()
    x.attach_grad()
    with autograd.record():
        y = block(x)
    y.backward(head)
    return y.asnumpy(), x.grad.asnumpy(), block.scale.grad().asnumpy()


def test_the_convolution_computes_what_broadcast_mul_computes_forward_and_backward():
    rng = np.random.default_rng(0)
    gluoncv = Normalize(512, 20)
    gluoncv.initialize()
    gluoncv.scale.set_data(mx.nd.array(rng.uniform(5, 25, (1, 512, 1, 1))))
    ours = ConvolutionScaledNormalize(gluoncv)
    assert ours.scale is gluoncv.scale  # one Parameter: name, shape and value shared
    x = mx.nd.array(rng.normal(size=(2, 512, 7, 9)))
    head = mx.nd.array(rng.normal(size=(2, 512, 7, 9)))
    expected = _forward_backward(gluoncv, x, head)
    for hybrid in (False, True):
        ours.hybridize(hybrid)
        for got, want, what in zip(_forward_backward(ours, x, head), expected,
                                   ("output", "input gradient", "scale gradient")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=what)
    graph = ours(mx.sym.var("x")).tojson()
    assert '"op": "Convolution"' in graph and '"num_group": "512"' in graph
    assert '"op": "broadcast_mul"' not in graph


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_vgg_ssd_uses_it_and_loads_weights_saved_with_gluoncvs_normalize(tmp_path):
    net = build_network("vgg-16", 300, ["a", "b"])
    assert isinstance(net.features.norm4, ConvolutionScaledNormalize)
    assert net.features.norm4.scale.name.endswith("vggatrousextractor0_normalize0_normalize_scale")
    assert net.features.norm4.scale.shape == (1, 512, 1, 1)
    # A file written by GluonCV's own extractor (plain Normalize) loads into ours and back.
    plain = vgg16_atrous_300()
    plain.initialize()
    plain(mx.nd.zeros((1, 3, 300, 300)))
    plain.norm4.scale.set_data(mx.nd.arange(512).reshape((1, 512, 1, 1)))
    plain.save_parameters(str(tmp_path / "plain.params"))
    ours = VGG16.layout_for(300).features()
    ours.initialize()
    ours.load_parameters(str(tmp_path / "plain.params"))
    np.testing.assert_array_equal(ours.norm4.scale.data().asnumpy(),
                                  plain.norm4.scale.data().asnumpy())
    ours.save_parameters(str(tmp_path / "ours.params"))
    assert sorted(mx.nd.load(str(tmp_path / "ours.params"))) == sorted(
        mx.nd.load(str(tmp_path / "plain.params")))
