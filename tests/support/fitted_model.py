"""A detector that really detects, made in minutes on a CPU: a ResNet-50 SSD fitted from scratch
to a few synthetic images without augmentation (Adam 1e-3, the project's loop and targets),
until its mAP on those images reaches a target. For fidelity checks of reduced precision
(INT8), which mean nothing on an untrained network that detects nothing confidently."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

LOG = logging.getLogger(__name__)
CLASSES = ("circle", "square", "triangle")


def read_images(folder: Path, count: int, seed: int,
                plain: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` synthetic images (RGB uint8) with label rows [xmin, ymin, xmax, ymax, class]
    (`plain`: the demo's style)."""
    from ssd_sagemaker.data.synthetic import write_annotated_channel

    paths = write_annotated_channel(folder / "images", folder / "annotations", count, seed,
                                    plain=plain)
    samples = []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        doc = json.loads((folder / "annotations" / f"{path.stem}.json").read_text())
        rows = [[a["left"], a["top"], a["left"] + a["width"] - 1, a["top"] + a["height"] - 1,
                 a["class_id"]] for a in doc["annotations"]]
        samples.append((image, np.asarray(rows, dtype=np.float32)))
    return samples


def tensors(samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (N, 3, S, S) and labels padded with -1 rows, as validation prepares them."""
    from ssd_sagemaker.data.transforms.presets import validation_transform

    transform = validation_transform(size)
    pairs = [transform(image, label) for image, label in samples]
    width = max(len(label) for _, label in pairs)
    labels = np.full((len(pairs), width, 5), -1, np.float32)
    for index, (_, label) in enumerate(pairs):
        labels[index, :len(label)] = label
    return np.stack([image for image, _ in pairs]), labels


def fit_detector(model_dir: Path, images: np.ndarray, labels: np.ndarray, size: int,
                 base_network: str = "resnet-50", target_map: float = 0.95,
                 max_steps: int = 90, check_every: int = 10, batch_size: int = 8,
                 build_net: Callable[[int, list[str]], Any] | None = None) -> float:
    """Fit an SSD to `images` (as `tensors` gives them) and export it to `model_dir` as `train`
    does; the training-set VOC07 mAP reached (checked every `check_every` steps). `build_net`
    (image size, classes): another SSD than the project's `base_network` one, which the
    artifact then names `base_network`."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from ssd_sagemaker.data.transforms.targets import SSDTargetEncoder
    from ssd_sagemaker.evaluation import DetectionMAP
    from ssd_sagemaker.metrics import MetricReporter
    from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
    from ssd_sagemaker.model.network import build_network
    from ssd_sagemaker.training.loop import Learner, train_one_epoch, validate

    mx.random.seed(0)
    np.random.seed(0)
    net = (build_net or partial(build_network, base_network))(size, list(CLASSES))
    net.set_nms(0.45, 400, 100)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    encoder = SSDTargetEncoder(anchors.asnumpy().reshape(-1, 4))
    targets = [encoder(label[label[:, 4] >= 0, :4], label[label[:, 4] >= 0, 4].astype(np.int64))
               for label in labels]
    cls_targets = np.stack([target[0] for target in targets])
    box_targets = np.stack([target[1] for target in targets])
    learner = Learner(net, gluon.Trainer(net.collect_params(), "adam",
                                         {"learning_rate": 0.001}), [mx.cpu()])
    starts = range(0, len(images), batch_size)
    loader = [(mx.nd.array(images[i:i + batch_size]), mx.nd.array(cls_targets[i:i + batch_size]),
               mx.nd.array(box_targets[i:i + batch_size])) for i in starts]
    validation = [(mx.nd.array(images[i:i + batch_size]), mx.nd.array(labels[i:i + batch_size]))
                  for i in starts]
    reporter, steps, fitted = MetricReporter("algo-1"), 0, 0.0
    while steps < max_steps:
        train_one_epoch(learner, loader, steps, reporter)
        steps += len(loader)
        if steps % check_every < len(loader):
            fitted = validate(net, validation, [mx.cpu()], DetectionMAP()).voc07
            LOG.info("%d steps: training-set mAP %.4f", steps, fitted)
            if fitted >= target_map:
                break
    save_artifact(net, model_dir, ModelInfo(CLASSES, size, base_network, 0.45),
                  {"base_network": base_network, "image_shape": size})
    return fitted


EIGHT_IMAGES = {"count": 8, "seed": 0, "size": 128}


def fit_eight_image_detector(folder: Path) -> tuple[Path, np.ndarray, np.ndarray, float]:
    """The ResNet-50 SSD fitted at 128 px to 8 synthetic images (seed 0) that the INT8
    fidelity tests need: fitted once per run (about a minute), copied by each test. Its model
    directory, the network inputs and labels, the training-set mAP."""
    size = EIGHT_IMAGES["size"]
    images, labels = tensors(read_images(folder / "train", EIGHT_IMAGES["count"],
                                         EIGHT_IMAGES["seed"]), size)
    reached = fit_detector(folder / "model", images, labels, size, target_map=0.9,
                           max_steps=120)
    return folder / "model", images, labels, reached
