"""SSD's L2 normalisation of VGG's conv4_3 (GluonCV's `Normalize`: unit length over channels,
then a learnt scale per channel) with the scale applied as a depthwise 1x1 convolution.

GluonCV multiplies by the scale with `broadcast_mul`, whose backward (a reduction of the
gradient over batch, height and width for 512 scales) is one of the slowest operators of a CPU
training step; oneDNN runs the same product as a depthwise convolution, in the run's precision
like every other convolution. Same maths, same parameter (name and shape (1, C, 1, 1)), so
checkpoints and model artifacts load either way."""

from __future__ import annotations

from typing import Any

from gluoncv.model_zoo.ssd.vgg_atrous import Normalize
from mxnet import gluon


class ConvolutionScaledNormalize(Normalize):
    """A drop-in for the `Normalize` it replaces, sharing its Parameter."""

    def __init__(self, replaced: Normalize):
        # Not Normalize.__init__: that would create a second, new scale Parameter.
        gluon.HybridBlock.__init__(self, params=replaced.params)
        self.eps = replaced.eps
        self.channels = replaced.scale.shape[1]
        self.scale = self.params.get("normalize_scale")

    def hybrid_forward(self, F: Any, x: Any, scale: Any) -> Any:
        x = F.L2Normalization(x, mode="channel", eps=self.eps)
        return F.Convolution(x, F.reshape(scale, shape=(-1, 1, 1, 1)), kernel=(1, 1),
                             num_filter=self.channels, num_group=self.channels, no_bias=True)


def scale_by_convolution(extractor: Any) -> Any:
    """GluonCV's VGG atrous `extractor` with its conv4_3 normalisation replaced in place."""
    extractor.norm4 = ConvolutionScaledNormalize(extractor.norm4)
    return extractor
