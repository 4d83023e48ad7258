"""Per-step training time of each backbone, image shape and precision: forward + backward + SGD
update on one batch already in memory (the compute bound of a training step), hybridized as
`train` runs it; bfloat16 only where the CPU has bfloat16 instructions. Not a test: run by
hand, `python bench/train_step.py [--batch 4] [--steps 3] [--shapes 300 512]`."""

import argparse
import json
import tempfile
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.data.transforms.presets import training_transform
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training.loop import Learner, train_one_epoch
from ssd_sagemaker.training.precision import MixedPrecision, cpu_has_bfloat16


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


def seconds_per_step(base_network: str, image_shape: int, batch: int, steps: int,
                     precision: str = "float32") -> float:
    return step_times(base_network, image_shape, batch, steps, precision)[0]


def step_times(base_network: str, image_shape: int, batch: int, steps: int,
               precision: str = "float32") -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads of this process) per step; CPU time does not
    count the time other processes took the cores."""
    net = build_network(base_network, image_shape, ["a", "b", "c"])
    data = fixed_batch(net, image_shape, batch)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "momentum": 0.9})
    reporter = MetricReporter("bench", open("/dev/null", "w"))
    learner = Learner(net, trainer, [mx.cpu()], MixedPrecision(precision, trainer))
    train_one_epoch(learner, [data], 0, reporter)  # warm-up: graph, memory
    cpu = time.process_time()
    result = train_one_epoch(learner, [data] * steps, 1, reporter)
    return result.seconds / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--shapes", type=int, nargs="+", default=[300, 512])
    args = parser.parse_args()
    precisions = ("float32", "bfloat16") if cpu_has_bfloat16() else ("float32",)
    print(f"batch {args.batch}, {args.steps} timed steps after one warm-up step, "
          f"{mx.context.num_gpus()} GPU(s), OpenMP threads from the environment")
    for base_network in ("vgg-16", "resnet-50"):
        for image_shape in args.shapes:
            steps = {p: seconds_per_step(base_network, image_shape, args.batch, args.steps, p)
                     for p in precisions}
            print(f"{base_network:>9} @ {image_shape}: " + ", ".join(
                f"{p} {s:6.2f} s/step ({args.batch / s:5.2f} images/s)"
                for p, s in steps.items()) + (
                f"; float32/bfloat16 {steps['float32'] / steps['bfloat16']:.2f}x"
                if len(steps) > 1 else ""), flush=True)


if __name__ == "__main__":
    main()
