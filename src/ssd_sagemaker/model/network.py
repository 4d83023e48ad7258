"""Build the GluonCV SSD network for a `base_network` and `image_shape`, and find its
ImageNet-pretrained base weights in the local model cache (never downloaded at run time)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import mxnet as mx
from gluoncv.model_zoo.ssd.ssd import SSD

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES, AnchorLayout
from ssd_sagemaker.model.cache import model_cache_dir as model_cache_dir  # re-exported

LOG = logging.getLogger(__name__)


def pretrained_base_file(base_network: str, cache_dir: Path) -> Path:
    """The cached ImageNet weights of the base, or a ClientError saying where we looked."""
    path = cache_dir / BACKBONES[base_network].weights_file
    if not path.is_file():
        raise ClientError(
            f"use_pretrained_model=1 needs the ImageNet weights of {base_network}, but {path} "
            f"does not exist (the model cache is $MXNET_HOME/models, default ~/.mxnet/models; "
            f"the container image fills it at build time). `ssd-sagemaker fetch-weights` "
            f"downloads it there; or set use_pretrained_model=0 to train from scratch."
        )
    return path


def _feature_map_sizes(net: SSD, image_shape: int, ctx: mx.Context) -> list[int]:
    with mx.autograd.predict_mode():
        maps = net.features(mx.nd.zeros((1, 3, image_shape, image_shape), ctx=ctx))
    return [fmap.shape[2] for fmap in maps]


def _ssd(layout: AnchorLayout, image_shape: int, classes: Sequence[str], steps: Sequence[float],
         ctx: mx.Context) -> SSD:
    scale = image_shape / layout.reference_size
    net = SSD(layout.network_name, image_shape, layout.features, layout.num_filters,
              [size * scale for size in layout.sizes], layout.ratios, list(steps),
              classes=list(classes), pretrained=False, ctx=ctx)
    # As GluonCV's train_ssd.py: layers carry their own initialisers (Xavier for convolutions),
    # the default covers the rest (batch-norm vectors, which Xavier cannot initialise).
    net.initialize(ctx=ctx)
    return net


def build_network(base_network: str, image_shape: int, classes: Sequence[str],
                  pretrained_file: Path | None = None, ctx: mx.Context | None = None) -> SSD:
    """An initialised SSD for `classes` at `image_shape`; the base starts from `pretrained_file`
    when given (ImageNet weights), from random initialisation otherwise.

    At a preset's reference size the preset is used as is; at other sizes anchor sizes scale
    with the image and each anchor step is the image size over its feature map's size, so
    anchors tile the image exactly (e.g. 384 px: maps 48, 24, 12, 6, 4, 2 → steps 8 … 192)."""
    ctx = ctx or mx.cpu()
    layout = BACKBONES[base_network].layout_for(image_shape)
    net = _ssd(layout, image_shape, classes, layout.steps, ctx)
    if image_shape != layout.reference_size:
        map_sizes = _feature_map_sizes(net, image_shape, ctx)
        net = _ssd(layout, image_shape, classes, [image_shape / size for size in map_sizes], ctx)
    with mx.autograd.train_mode():  # ends deferred initialisation: every shape is known
        net(mx.nd.zeros((1, 3, image_shape, image_shape), ctx=ctx))
    if pretrained_file is not None:
        load_pretrained_base(net, base_network, pretrained_file, ctx)
    return net


def load_pretrained_base(net: SSD, base_network: str, pretrained_file: Path,
                         ctx: mx.Context) -> None:
    """Load ImageNet weights into the base (SSD's extra layers stay randomly initialised), the
    way the base's `Backbone.load_weights` says; a file that does not fit is a ClientError."""
    backbone = BACKBONES[base_network]
    try:
        backbone.load_weights(net, pretrained_file, ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as error:
        raise ClientError(
            f"The pretrained weights file {pretrained_file} cannot be loaded into the "
            f"{base_network} base: {str(error).splitlines()[0]}. Replace it with GluonCV's "
            f"{backbone.weights_file}, or set use_pretrained_model=0."
        ) from None
    LOG.info("loaded ImageNet weights of the %s base from %s", base_network, pretrained_file)
