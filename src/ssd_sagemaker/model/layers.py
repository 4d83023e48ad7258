"""The documented layer names of each base network and `freeze_layer_pattern`.

The built-in algorithm names layers as the published `vgg16-symbol.json` and
`resnet-50-symbol.json` do (`conv1_1` … `fc7`; `conv0`, `stage1_unit1_conv1` …). GluonCV numbers
its layers differently (`conv0` … `conv12`, `dilated_conv0`; `stage1_conv0` …), so each base
parameter is given its documented layer name here; a pattern may match either name.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import compile_regex

LOG = logging.getLogger(__name__)

VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
RESNET50_UNITS = (3, 4, 6, 3)  # bottleneck units per stage

_PARAM_SUFFIX = re.compile(r"_(weight|bias|gamma|beta|running_mean|running_var|moving_mean|"
                           r"moving_var)$")
_NET_PREFIX = re.compile(r"^ssd\d+_")


def _vgg_layer(native: str) -> str | None:
    """`vggatrousextractor0_conv4` → `conv3_1`; `dilated_conv0/1` → `fc6/fc7`; extras → None."""
    match = re.fullmatch(r"vggatrousextractor\d+_(dilated_)?conv(\d+)", native)
    if not match:
        return None
    index = int(match.group(2))
    if match.group(1):
        return ("fc6", "fc7")[index] if index < 2 else None
    return VGG16_CONVS[index] if index < len(VGG16_CONVS) else None


def _resnet_unit_layer(stage: int, kind: str, index: int) -> str | None:
    """GluonCV numbers a stage's convs (and batch norms) across units: unit 1 has three body
    convs then the shortcut (index 3), later units three each."""
    if index == 3:
        return f"stage{stage}_unit1_sc"
    unit, position = (1, index) if index < 3 else (2 + (index - 4) // 3, (index - 4) % 3)
    if unit > RESNET50_UNITS[stage - 1]:
        return None
    return f"stage{stage}_unit{unit}_{'conv' if kind == 'conv' else 'bn'}{position + 1}"


def _resnet_layer(native: str) -> str | None:
    """`resnetv10_stage2_conv5` → `stage2_unit2_conv2`; `resnetv10_conv0` → `conv0`;
    `resnetv10_batchnorm0` → `bn0`; SSD's expansion layers → None."""
    match = re.fullmatch(r"resnetv1\d+_(?:stage(\d)_)?(conv|batchnorm)(\d+)", native)
    if not match:
        return None
    stage, kind, index = match.group(1), match.group(2), int(match.group(3))
    if stage is None:
        return {("conv", 0): "conv0", ("batchnorm", 0): "bn0"}.get((kind, index))
    return _resnet_unit_layer(int(stage), kind, index)


_DOCUMENTED = {"vgg-16": _vgg_layer, "resnet-50": _resnet_layer}


@dataclass(frozen=True)
class BaseLayer:
    """A parameter of the base network with its GluonCV and documented layer names."""

    parameter: str
    native: str
    documented: str


def base_layers(net: gluon.Block, base_network: str) -> list[BaseLayer]:
    """Every parameter of the base network (not SSD's extra layers or predictors)."""
    layers = []
    for name in net.features.collect_params().keys():
        native = _PARAM_SUFFIX.sub("", _NET_PREFIX.sub("", name))
        documented = _DOCUMENTED[base_network](native)
        if documented is not None:
            layers.append(BaseLayer(name, native, documented))
    return layers


def freeze_layers(net: gluon.Block, base_network: str, pattern: str | None) -> list[str]:
    """Set grad_req='null' on base parameters whose documented or GluonCV layer name matches
    `pattern` (a search, in RE2: linear time, so no pattern can hang the job); returns the
    documented names frozen."""
    if not pattern:
        return []
    try:
        regex = compile_regex(pattern)
    except ValueError as error:
        raise ClientError(f"freeze_layer_pattern {pattern!r} is not a valid regular expression "
                          f"in RE2 syntax: {error}.") from None
    layers = base_layers(net, base_network)
    params = net.collect_params()
    frozen = []
    for layer in layers:
        if regex.search(layer.documented) or regex.search(layer.native):
            params[layer.parameter].grad_req = "null"
            if layer.documented not in frozen:
                frozen.append(layer.documented)
    if frozen:
        LOG.info("freeze_layer_pattern %r froze %d layers: %s", pattern, len(frozen),
                 ", ".join(frozen))
    else:
        available = list(dict.fromkeys(layer.documented for layer in layers))
        LOG.warning("freeze_layer_pattern %r matches no layer of %s; nothing is frozen. "
                    "Layer names: %s", pattern, base_network, ", ".join(available))
    return frozen
