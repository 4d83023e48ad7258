"""Floating-point operations of a network, counted from its symbol graph with inferred shapes:
what model FLOP utilisation (bench/mfu.py) divides by.

Counted are the convolutions and fully connected layers, a multiply-add as 2 FLOPs, the
convention of the published figures (SSD300 on VGG-16: 62.8 GFLOP per image forward);
activations, normalisation and the loss add well under 1 %. A training step is taken as 3 × the
forward: the backward computes a gradient for the input and one for the weights, each as costly
as the forward."""

from __future__ import annotations

import json
import math

import mxnet as mx
from mxnet import autograd, gluon

TRAINING_PER_FORWARD = 3


def symbol_flops(graph: mx.sym.Symbol, data_shape: tuple[int, ...]) -> int:
    """FLOPs of one pass of `graph` (input variable `data` of `data_shape`)."""
    internals = graph.get_internals()
    _, output_shapes, _ = internals.infer_shape(data=data_shape)
    shapes = dict(zip(internals.list_outputs(), output_shapes))
    nodes = json.loads(graph.tojson())["nodes"]
    total = 0
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        # Weights are (out, in / groups, kernel...) or (out, in): one multiply-add per weight
        # element outside the output channel, per output element.
        weight = shapes[_output_name(nodes[node["inputs"][1][0]])]
        total += 2 * math.prod(shapes[_output_name(node)]) * math.prod(weight[1:])
    return total


def _output_name(node: dict) -> str:
    """A node's (first) output among the graph's internals: a variable is its own output."""
    return node["name"] if node["op"] == "null" else node["name"] + "_output"


def training_flops_per_image(net: gluon.HybridBlock, image_shape: int) -> int:
    """FLOPs of one training step per image: 3 × the training-mode forward of `net`."""
    with autograd.train_mode():
        graph = mx.sym.Group(list(net(mx.sym.var("data"))))
    return TRAINING_PER_FORWARD * symbol_flops(graph, (1, 3, image_shape, image_shape))
