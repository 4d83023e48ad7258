"""The documented layer names of each base network and `freeze_layer_pattern`.

The built-in algorithm names layers as the published `vgg16-symbol.json` and
`resnet-50-symbol.json` do (`conv1_1` … `fc7`; `conv0`, `stage1_unit1_conv1` …). GluonCV numbers
its layers differently (`conv0` … `conv12`, `dilated_conv0`; `stage1_conv0` …), so each base
parameter is given its documented layer name (by its `Backbone.documented_layer`); a pattern may
match either name.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.safe_regex import compile_regex

LOG = logging.getLogger(__name__)

_PARAM_SUFFIX = re.compile(r"_(weight|bias|gamma|beta|running_mean|running_var|moving_mean|"
                           r"moving_var)$")
_NET_PREFIX = re.compile(r"^ssd\d+_")


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
        documented = BACKBONES[base_network].documented_layer(native)
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
