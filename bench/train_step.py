"""Per-step training time of each backbone and image shape: forward + backward + SGD update on
one batch already in memory (the compute bound of a training step), hybridized as `train` runs
it. Not a test: run by hand, `python bench/train_step.py [--batch 4] [--steps 3]`."""

import argparse
import json
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.data.transforms import training_transform
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training.loop import train_one_epoch


def fixed_batch(net, image_shape: int, batch: int):
    """One batch of demo images (shapes on backgrounds), targets made by the training
    transform; random-noise images make a from-scratch VGG diverge, demo images do not."""
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    transform = training_transform(image_shape, anchors)
    with tempfile.TemporaryDirectory() as folder:
        images, annotations = Path(folder) / "images", Path(folder) / "annotations"
        write_annotated_channel(images, annotations, batch, seed=0)
        samples = []
        for path in sorted(annotations.glob("*.json")):
            annotation = json.loads(path.read_text())
            boxes = [[a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"],
                      a["class_id"]] for a in annotation["annotations"]]
            image = mx.image.imread(str(images / annotation["file"]))
            samples.append(transform(image, np.array(boxes, np.float32)))
    return tuple(mx.nd.stack(*parts) for parts in zip(*samples))


def seconds_per_step(base_network: str, image_shape: int, batch: int, steps: int) -> float:
    net = build_network(base_network, image_shape, ["a", "b", "c"])
    data = fixed_batch(net, image_shape, batch)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "momentum": 0.9})
    reporter = MetricReporter("bench", open("/dev/null", "w"))
    train_one_epoch(net, [data], trainer, [mx.cpu()], 0, reporter)  # warm-up: graph, memory
    result = train_one_epoch(net, [data] * steps, trainer, [mx.cpu()], 1, reporter)
    return result.seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"batch {args.batch}, {args.steps} timed steps after one warm-up step, "
          f"{mx.context.num_gpus()} GPU(s)")
    for base_network in ("vgg-16", "resnet-50"):
        for image_shape in (300, 512):
            step = seconds_per_step(base_network, image_shape, args.batch, args.steps)
            print(f"{base_network:>9} @ {image_shape}: {step:6.2f} s/step, "
                  f"{args.batch / step:5.2f} images/s")


if __name__ == "__main__":
    main()
