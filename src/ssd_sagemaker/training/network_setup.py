"""The SSD made ready to train: built seeded (its base from the pretrained file, when there is
one), its frozen layers and NMS settings applied, copied to every device; plus the anchors
that the training transform encodes targets against, from one train-mode forward (GluonCV's
recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
from mxnet import autograd, gluon

from ssd_sagemaker.model.layers import freeze_layers
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.seeding import seed_everything

POST_NMS_DETECTIONS = 100


@dataclass(frozen=True)
class NetworkPlan:
    """The network's hyperparameters: base network, input size, the base layers kept frozen
    (a pattern, None: none) and the NMS of its inference graph."""

    base_network: str
    image_shape: int
    freeze_layer_pattern: str | None
    nms_threshold: float
    nms_topk: int


def training_network(plan: NetworkPlan, classes: Sequence[str], pretrained: Path | None,
                     contexts: Sequence[mx.Context]) -> tuple[gluon.HybridBlock, mx.nd.NDArray]:
    """The SSD for `classes` on every device of `contexts`, and its anchors."""
    seed_everything()
    net = build_network(plan.base_network, plan.image_shape, classes, pretrained,
                        ctx=contexts[0])
    freeze_layers(net, plan.base_network, plan.freeze_layer_pattern)
    net.set_nms(nms_thresh=plan.nms_threshold, nms_topk=plan.nms_topk,
                post_nms=POST_NMS_DETECTIONS)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, plan.image_shape, plan.image_shape),
                                        ctx=contexts[0]))
    net.collect_params().reset_ctx(contexts)
    return net, anchors
