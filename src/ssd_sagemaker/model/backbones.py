"""The base networks SSD can be built on: one `Backbone` record per `base_network` name, holding
everything that differs between them (ImageNet weights file, anchor layouts, how the weights load,
documented layer names, whether bfloat16 pays on CPUs). Adding a backbone is one record here; the
hyperparameter's choices, the network builder, `freeze_layer_pattern`, the precision choice and
and `ssd-sagemaker fetch-weights` all read `BACKBONES`.

This module imports no MXNet or GluonCV at import time (they are imported where a network is
built), so the hyperparameter table and `fetch-weights` can read it cheaply."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gluoncv.model_zoo.ssd.ssd import SSD


@dataclass(frozen=True)
class AnchorLayout:
    """One GluonCV SSD preset: the feature extractor and anchors at its reference size.

    `features` is a factory of the feature extractor (GluonCV's VGG extractors) or the names of
    the classifier's output layers that feed SSD (`network_name` is then that classifier)."""

    reference_size: int
    features: Callable[..., Any] | Sequence[str]
    network_name: str | None
    num_filters: Sequence[int] | None
    sizes: Sequence[float]
    ratios: Sequence[Sequence[float]]
    steps: Sequence[float]


@dataclass(frozen=True)
class Backbone:
    """What one base network needs: `model_store_name` and `weights_file` are GluonCV's model
    store name and the file its `get_model_file` writes to `$MXNET_HOME/models`, whose SHA-1 the
    store publishes as `weights_sha1` (`ssd-sagemaker fetch-weights` checks it);
    `load_weights(net, file, ctx)` puts the file's ImageNet weights into the SSD's base and
    raises ValueError/AssertionError/MXNetError when they do not fit; `documented_layer` maps a
    GluonCV parameter's layer name (prefix `ssdN_` and suffix `_weight` … removed) to the name
    in the published symbol files, None for layers outside the base; `bfloat16_pays_on_cpu` is
    the measured verdict `precision=auto` follows."""

    name: str
    model_store_name: str
    weights_file: str
    weights_sha1: str
    layouts: tuple[AnchorLayout, ...]
    load_weights: Callable[[SSD, Path, Any], None]
    documented_layer: Callable[[str], str | None]
    bfloat16_pays_on_cpu: bool

    def layout_for(self, image_shape: int) -> AnchorLayout:
        """The largest preset whose reference size does not exceed `image_shape` (else the
        smallest)."""
        layouts = sorted(self.layouts, key=lambda layout: layout.reference_size)
        fitting = [layout for layout in layouts if layout.reference_size <= image_shape]
        return fitting[-1] if fitting else layouts[0]

    def smallest_anchor(self, image_shape: int) -> float:
        """The side of the smallest anchor at `image_shape`, in network pixels: boxes far below
        it overlap no anchor enough to be learnt (`data/checks/object_sizes.py` warns)."""
        layout = self.layout_for(image_shape)
        return layout.sizes[0] * image_shape / layout.reference_size


# --- VGG-16 (atrous) ------------------------------------------------------------------------

VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
_VGG_RATIOS_300 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
_VGG_RATIOS_512 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2


def _vgg16_atrous_300(**kwargs: Any) -> Any:
    from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

    from ssd_sagemaker.model.l2_normalization import scale_by_convolution
    return scale_by_convolution(vgg16_atrous_300(**kwargs))


def _vgg16_atrous_512(**kwargs: Any) -> Any:
    from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_512

    from ssd_sagemaker.model.l2_normalization import scale_by_convolution
    return scale_by_convolution(vgg16_atrous_512(**kwargs))


def _load_vgg16(net: SSD, weights: Path, ctx: Any) -> None:
    """GluonCV's atrous VGG file loads into the feature extractor by structure."""
    net.features.load_parameters(str(weights), ctx=ctx, allow_missing=True, ignore_extra=True)


def _vgg16_layer(native: str) -> str | None:
    """`vggatrousextractor0_conv4` → `conv3_1`; `dilated_conv0/1` → `fc6/fc7`; extras → None."""
    match = re.fullmatch(r"vggatrousextractor\d+_(dilated_)?conv(\d+)", native)
    if not match:
        return None
    index = int(match.group(2))
    if match.group(1):
        return ("fc6", "fc7")[index] if index < 2 else None
    return VGG16_CONVS[index] if index < len(VGG16_CONVS) else None


VGG16 = Backbone(
    name="vgg-16",
    model_store_name="vgg16_atrous",
    weights_file="vgg16_atrous-4fa2e1ad.params",
    weights_sha1="4fa2e1ad96b8c8d1ba9e5a43556cd909d70b3985",
    layouts=(
        AnchorLayout(300, _vgg16_atrous_300, None, None,
                     [21, 45, 99, 153, 207, 261, 315], _VGG_RATIOS_300, [8, 16, 32, 64, 100, 300]),
        AnchorLayout(512, _vgg16_atrous_512, None, None,
                     [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6], _VGG_RATIOS_512,
                     [8, 16, 32, 64, 128, 256, 512]),
    ),
    load_weights=_load_vgg16,
    documented_layer=_vgg16_layer,
    # Measured with bench/train_step.py (batch 4, 2 OpenMP threads, AVX512-BF16 CPU): 1.74x
    # (300 px) and 1.95x (512 px) faster in bfloat16.
    bfloat16_pays_on_cpu=True,
)


# --- ResNet-50 v1 ---------------------------------------------------------------------------

RESNET50_UNITS = (3, 4, 6, 3)  # bottleneck units per stage
_RESNET_PREFIX = re.compile(r"^(ssd\d+_)?resnetv1\d+_")


def _copy_by_layer_name(target: Any, source: Any) -> int:
    """Copy parameters whose names agree once the per-instance prefixes (`ssd0_resnetv10_`,
    `resnetv12_`) are removed; returns how many were copied."""
    def key(name: str) -> str:
        return _RESNET_PREFIX.sub("", name)

    by_key = {key(name): param for name, param in source.items()}
    copied = 0
    for name, param in target.items():
        match = by_key.get(key(name)) if _RESNET_PREFIX.match(name) else None
        if match is not None:
            if match.shape != param.shape:
                raise ValueError(f"{name}: shape {param.shape} but the file has {match.shape}")
            param.set_data(match.data())
            copied += 1
    return copied


def _load_resnet50(net: SSD, weights: Path, ctx: Any) -> None:
    """The file is GluonCV's `resnet50_v1` classifier; its layers are copied by name."""
    from gluoncv.model_zoo import get_model
    classifier = get_model("resnet50_v1", pretrained=False)
    classifier.load_parameters(str(weights), ctx=ctx)
    if _copy_by_layer_name(net.features.collect_params(), classifier.collect_params()) == 0:
        raise ValueError("no layer of the file matches the ResNet-50 base")


def _resnet50_unit_layer(stage: int, kind: str, index: int) -> str | None:
    """GluonCV numbers a stage's convs (and batch norms) across units: unit 1 has three body
    convs then the shortcut (index 3), later units three each."""
    if index == 3:
        return f"stage{stage}_unit1_sc"
    unit, position = (1, index) if index < 3 else (2 + (index - 4) // 3, (index - 4) % 3)
    if unit > RESNET50_UNITS[stage - 1]:
        return None
    return f"stage{stage}_unit{unit}_{'conv' if kind == 'conv' else 'bn'}{position + 1}"


def _resnet50_layer(native: str) -> str | None:
    """`resnetv10_stage2_conv5` → `stage2_unit2_conv2`; `resnetv10_conv0` → `conv0`;
    `resnetv10_batchnorm0` → `bn0`; SSD's expansion layers → None."""
    match = re.fullmatch(r"resnetv1\d+_(?:stage(\d)_)?(conv|batchnorm)(\d+)", native)
    if not match:
        return None
    stage, kind, index = match.group(1), match.group(2), int(match.group(3))
    if stage is None:
        return {("conv", 0): "conv0", ("batchnorm", 0): "bn0"}.get((kind, index))
    return _resnet50_unit_layer(int(stage), kind, index)


RESNET50 = Backbone(
    name="resnet-50",
    model_store_name="resnet50_v1",
    weights_file="resnet50_v1-cc729d95.params",
    weights_sha1="cc729d95031ca98cf2ff362eb57dee4d9994e4b2",
    layouts=(
        AnchorLayout(512, ["stage3_activation5", "stage4_activation2"], "resnet50_v1",
                     [512, 512, 256, 256], [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492],
                     [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2,
                     [16, 32, 64, 128, 256, 512]),
    ),
    load_weights=_load_resnet50,
    documented_layer=_resnet50_layer,
    # The base is a SymbolBlock, converted for the pass by `training/precision.py` (before,
    # only SSD's 12 predictors ran in bfloat16 and the bench saw 1.01x). With all 73
    # convolutions in bfloat16, issue 18 measured about 1.5x the step speed (0.85-0.92 vs
    # 1.23-1.47 core-seconds per step, 2-core Zen 5 with AVX512-BF16), losses finite. Not
    # re-measurable on AVX2-only CPUs (no bfloat16 kernels): bench/mfu.py measures it where
    # the CPU has them.
    bfloat16_pays_on_cpu=True,
)


BACKBONES: Mapping[str, Backbone] = {backbone.name: backbone for backbone in (VGG16, RESNET50)}
