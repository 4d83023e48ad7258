"""flops.py: FLOPs counted from the symbol graph agree with hand counts and with the published
SSD300 figure."""

import mxnet as mx
import pytest

from ssd_sagemaker.model.flops import symbol_flops, training_flops_per_image
from ssd_sagemaker.model.network import build_network


def test_convolutions_grouped_convolutions_and_dense_layers_are_counted_by_hand():
    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=8, name="conv")
    depthwise = mx.sym.Convolution(conv, kernel=(1, 1), num_filter=8, num_group=8, no_bias=True,
                                   name="depthwise")
    dense = mx.sym.FullyConnected(mx.sym.relu(depthwise), num_hidden=10, name="dense")
    # 2 FLOPs per multiply-add: 8x6x5 outputs of 4x3x3 inputs; of 1 input; 10 of 8x6x5.
    expected = 2 * (8 * 6 * 5 * 4 * 3 * 3 + 8 * 6 * 5 * 1 + 10 * 8 * 6 * 5)
    assert symbol_flops(dense, (1, 4, 6, 5)) == expected
    assert symbol_flops(dense, (3, 4, 6, 5)) == 3 * expected


def test_vgg16_ssd300_matches_the_published_count():
    # SSD300 on VGG-16 for VOC's 20 classes: 62.8 GFLOP per image (forward, 2 per multiply-add).
    net = build_network("vgg-16", 300, [str(c) for c in range(20)])
    assert training_flops_per_image(net, 300) / 3 == pytest.approx(62.75e9, rel=1e-3)
