"""Build the GluonCV SSD network for a `base_network` and `image_shape`, and find its
ImageNet-pretrained base weights in the local model cache (never downloaded at run time)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import mxnet as mx
from gluoncv.model_zoo import get_model
from gluoncv.model_zoo.ssd.ssd import SSD
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300, vgg16_atrous_512

from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

# GluonCV's file names of the ImageNet weights of each base (what its model store would fetch).
PRETRAINED_BASE_FILES = {
    "vgg-16": "vgg16_atrous-4fa2e1ad.params",
    "resnet-50": "resnet50_v1-cc729d95.params",
}

# Each layout is GluonCV's `ssd_<size>_<base>_custom` preset; other image shapes scale the
# anchor sizes with the image and take anchor steps from the real feature-map strides.
_VGG_RATIOS_300 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
_VGG_RATIOS_512 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2


@dataclass(frozen=True)
class AnchorLayout:
    """One GluonCV SSD preset: the feature extractor and anchors at its reference size."""

    reference_size: int
    features: Callable[..., mx.gluon.HybridBlock] | Sequence[str]
    network_name: str | None
    num_filters: Sequence[int] | None
    sizes: Sequence[float]
    ratios: Sequence[Sequence[float]]
    steps: Sequence[float]


LAYOUTS: Mapping[str, tuple[AnchorLayout, ...]] = {
    "vgg-16": (
        AnchorLayout(300, vgg16_atrous_300, None, None,
                     [21, 45, 99, 153, 207, 261, 315], _VGG_RATIOS_300, [8, 16, 32, 64, 100, 300]),
        AnchorLayout(512, vgg16_atrous_512, None, None,
                     [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6], _VGG_RATIOS_512,
                     [8, 16, 32, 64, 128, 256, 512]),
    ),
    "resnet-50": (
        AnchorLayout(512, ["stage3_activation5", "stage4_activation2"], "resnet50_v1",
                     [512, 512, 256, 256], [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492],
                     [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2,
                     [16, 32, 64, 128, 256, 512]),
    ),
}


def choose_layout(base_network: str, image_shape: int) -> AnchorLayout:
    """The largest preset whose reference size does not exceed `image_shape` (else the smallest)."""
    layouts = sorted(LAYOUTS[base_network], key=lambda layout: layout.reference_size)
    fitting = [layout for layout in layouts if layout.reference_size <= image_shape]
    return fitting[-1] if fitting else layouts[0]


def model_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """GluonCV's model cache: `$MXNET_HOME/models`, default `~/.mxnet/models`."""
    environ = os.environ if environ is None else environ
    home = environ.get("MXNET_HOME") or os.path.join("~", ".mxnet")
    return Path(home).expanduser() / "models"


def pretrained_base_file(base_network: str, cache_dir: Path) -> Path:
    """The cached ImageNet weights of the base, or a ClientError saying where we looked."""
    path = cache_dir / PRETRAINED_BASE_FILES[base_network]
    if not path.is_file():
        raise ClientError(
            f"use_pretrained_model=1 needs the ImageNet weights of {base_network}, but {path} "
            f"does not exist (the model cache is $MXNET_HOME/models, default ~/.mxnet/models; "
            f"the container image fills it at build time). Put the file there, or set "
            f"use_pretrained_model=0 to train from scratch."
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
    layout = choose_layout(base_network, image_shape)
    net = _ssd(layout, image_shape, classes, layout.steps, ctx)
    if image_shape != layout.reference_size:
        map_sizes = _feature_map_sizes(net, image_shape, ctx)
        net = _ssd(layout, image_shape, classes, [image_shape / size for size in map_sizes], ctx)
    with mx.autograd.train_mode():  # ends deferred initialisation: every shape is known
        net(mx.nd.zeros((1, 3, image_shape, image_shape), ctx=ctx))
    if pretrained_file is not None:
        load_pretrained_base(net, base_network, pretrained_file, ctx)
    return net


def _copy_by_layer_name(target: mx.gluon.ParameterDict, source: mx.gluon.ParameterDict) -> int:
    """Copy parameters whose names agree once the per-instance prefixes (`ssd0_resnetv10_`,
    `resnetv12_`) are removed; returns how many were copied."""
    def key(name: str) -> str:
        return re.sub(r"^(ssd\d+_)?resnetv1\d+_", "", name)

    by_key = {key(name): param for name, param in source.items()}
    copied = 0
    for name, param in target.items():
        match = by_key.get(key(name)) if re.match(r"^(ssd\d+_)?resnetv1\d+_", name) else None
        if match is not None:
            if match.shape != param.shape:
                raise ValueError(f"{name}: shape {param.shape} but the file has {match.shape}")
            param.set_data(match.data())
            copied += 1
    return copied


def load_pretrained_base(net: SSD, base_network: str, pretrained_file: Path,
                         ctx: mx.Context) -> None:
    """Load ImageNet weights into the base (SSD's extra layers stay randomly initialised).

    VGG-16: GluonCV's atrous VGG file loads into the feature extractor by structure.
    ResNet-50: the file is GluonCV's `resnet50_v1` classifier; its layers are copied by name."""
    try:
        if base_network == "vgg-16":
            net.features.load_parameters(str(pretrained_file), ctx=ctx, allow_missing=True,
                                         ignore_extra=True)
        else:
            classifier = get_model("resnet50_v1", pretrained=False)
            classifier.load_parameters(str(pretrained_file), ctx=ctx)
            copied = _copy_by_layer_name(net.features.collect_params(),
                                         classifier.collect_params())
            if copied == 0:
                raise ValueError("no layer of the file matches the ResNet-50 base")
    except (mx.base.MXNetError, AssertionError, ValueError) as error:
        raise ClientError(
            f"The pretrained weights file {pretrained_file} cannot be loaded into the "
            f"{base_network} base: {str(error).splitlines()[0]}. Replace it with GluonCV's "
            f"{PRETRAINED_BASE_FILES[base_network]}, or set use_pretrained_model=0."
        ) from None
    LOG.info("loaded ImageNet weights of the %s base from %s", base_network, pretrained_file)
