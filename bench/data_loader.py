"""Is the data loader ever the bottleneck? Images per second of this project's loader (decode +
SSD augmentation + target encoding in worker processes, batches as NDArrays), next to GluonCV's
own pipeline (`SSDDefaultTrainTransform` + `gluon.data.DataLoader`, same workers, same images)
and to the training step (VGG-16 SSD300 forward + backward + update), all in one run.
Goals: loader >= 2x the training step, and >= GluonCV. Not a test: run by hand,
`python bench/data_loader.py [--images 64] [--batch 32] [--epochs 3] [--scale 2]`."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Stack, Tuple
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
from mxnet import autograd, gluon
from train_step import seconds_per_step  # bench/train_step.py

from ssd_sagemaker.data.channels import read_training_data
from ssd_sagemaker.data.loading.batch_work import load
from ssd_sagemaker.data.loading.loader import loader_workers
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.data.transforms.presets import MEAN, STD, training_transform
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.hyperparameters import parse_hyperparameters
from ssd_sagemaker.model.network import build_network

SHAPE = 300


def make_dataset(root: Path, count: int, scale: float) -> Paths:
    """Demo images enlarged `scale` times (x2: 512-800 x 448-640 px, like VOC and COCO photos),
    as an image + JSON channel."""
    paths = Paths(root)
    images, notes = paths.channel_dir("train"), paths.channel_dir("train_annotation")
    write_annotated_channel(images, notes, count, seed=0)
    for note in sorted(notes.glob("*.json")):
        document = json.loads(note.read_text())
        path = images / document["file"]
        image = cv2.imread(str(path))
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        size = document["image_size"][0]
        size["width"], size["height"] = image.shape[1], image.shape[0]
        for box in document["annotations"]:
            for key in ("left", "top", "width", "height"):
                box[key] *= scale
        note.write_text(json.dumps(document))
    return paths


class GluonDataset(gluon.data.Dataset):
    """The same samples the way a GluonCV script reads them: mx.image.imread + pixel labels."""

    def __init__(self, samples):
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int):
        sample = self._samples[index]
        image = mx.image.imread(str(sample.image))
        height, width = image.shape[:2]
        return image, sample.label(width, height)[:, :5]


def timed(batches, limit: int) -> tuple[float, float, int]:
    """(seconds to the first batch, seconds for the rest, images after the first batch)."""
    started = time.perf_counter()
    first, images = None, 0
    for index, batch in enumerate(batches):
        batch[0].wait_to_read()
        if first is None:
            first = time.perf_counter()
            continue
        images += batch[0].shape[0]
        if index + 1 >= limit:
            break
    return first - started, time.perf_counter() - first, images


def ours(data, transform, batch: int, epochs: int) -> tuple[float, float]:
    def all_epochs():
        for epoch in range(epochs):
            yield from data.train_batches(epoch, transform, batch)
    start, seconds, images = timed(all_epochs(), 10 ** 9)
    return images / seconds, start


def gluoncv(samples, anchors, batch: int, epochs: int, workers: int) -> tuple[float, float]:
    dataset = GluonDataset(samples).transform(
        SSDDefaultTrainTransform(SHAPE, SHAPE, anchors, mean=MEAN, std=STD))
    loader = gluon.data.DataLoader(dataset, batch, shuffle=True, last_batch="rollover",
                                   batchify_fn=Tuple(Stack(), Stack(), Stack()),
                                   num_workers=workers)

    def all_epochs():
        for _ in range(epochs):
            yield from loader
    start, seconds, images = timed(all_epochs(), 10 ** 9)
    return images / seconds, start


def per_image_ms(samples, anchors, ours_transform) -> tuple[float, float]:
    """CPU milliseconds per image in this one process (decode included), ours and GluonCV's."""
    gluon_transform = SSDDefaultTrainTransform(SHAPE, SHAPE, anchors, mean=MEAN, std=STD)
    dataset = GluonDataset(samples)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for sample in samples:
        ours_transform(*load(sample), rng=rng)
    mine = (time.perf_counter() - started) / len(samples) * 1000
    started = time.perf_counter()
    for index in range(len(samples)):
        outputs = gluon_transform(*dataset[index])
        outputs[1].wait_to_read()
    theirs = (time.perf_counter() - started) / len(samples) * 1000
    return mine, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="loader batch size")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=loader_workers())
    args = parser.parse_args()

    net = build_network("vgg-16", SHAPE, ["circle", "square", "triangle"])
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, SHAPE, SHAPE)))
    with tempfile.TemporaryDirectory() as folder:
        paths = make_dataset(Path(folder), args.images, args.scale)
        channels = {name: ChannelConfig(name, "image/jpeg") for name in ("train",
                                                                        "train_annotation")}
        hp = parse_hyperparameters({"num_classes": "3",
                                    "num_training_samples": str(args.images)})
        data = read_training_data(paths, channels, hp)
        data.workers = args.workers
        samples = data.train.samples
        sizes = [cv2.imread(str(s.image)).shape[:2] for s in samples[:8]]
        print(f"{len(samples)} JPEGs ({min(w for _, w in sizes)}-{max(w for _, w in sizes)} px "
              f"wide), loader batch {args.batch}, {args.epochs} epochs, {args.workers} loader "
              f"worker(s), {len(os.sched_getaffinity(0))} CPUs")
        transform = training_transform(SHAPE, anchors)
        mine_ms, theirs_ms = per_image_ms(samples, anchors, transform)
        mine, mine_start = ours(data, transform, args.batch, args.epochs)
        data.close()
        theirs, theirs_start = gluoncv(samples, anchors, args.batch, args.epochs, args.workers)
    step = seconds_per_step("vgg-16", SHAPE, args.train_batch, 3)
    training = args.train_batch / step
    print(f"loader (this project):     {mine:7.1f} images/s "
          f"(first batch after {mine_start:.1f} s: worker start-up)")
    print(f"loader (GluonCV preset):   {theirs:7.1f} images/s "
          f"(first batch after {theirs_start:.1f} s)")
    print(f"per image, one process:    {mine_ms:7.1f} ms this project, {theirs_ms:.1f} ms GluonCV "
          f"(decode + augment + targets)")
    print(f"training step:             {training:7.2f} images/s (VGG-16 SSD300, batch "
          f"{args.train_batch}, CPU)")
    print(f"ratio loader / training step: {mine / training:6.1f}x  (goal >= 2)")
    print(f"ratio loader / GluonCV:       {mine / theirs:6.2f}x  (goal >= 1)")


if __name__ == "__main__":
    main()
