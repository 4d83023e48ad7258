"""The peer the benchmarks measure `train` against: training and validation built the way
GluonCV's `scripts/detection/ssd/train_ssd.py` builds them — `SSDDefaultTrainTransform` +
`gluon.data.DataLoader` (Stack batchify, shuffle, `last_batch="rollover"`), a hybridized net
(static_alloc, static_shape), `SSDMultiBoxLoss`, `gluon.Trainer` SGD (lr, momentum 0.9, wd 5e-4)
stepped with 1 (the loss is already normalised; `optimizer="adam"` gives `train`'s Adam, which
takes no momentum or weight decay either), and for validation `SSDDefaultValTransform`
+ Pad batchify + GluonCV's `VOC07MApMetric` / `VOCMApMetric`. Only the network comes from this
project (`build_network`), so both sides train the very same model.
For `augmentation` `flip` and `none` (which `train_ssd.py` lacks) the train transform is GluonCV's
preset minus its random steps: resize (and a random horizontal flip), the same target generator.
These, and validation, resize with the interp=9 rule of the presets through opencv-python's
OpenCV, as `train` does, not through the OpenCV built into MXNet: the two builds round bicubic
enlargements differently (one grey level on ~5 % of the pixels), and so a from-scratch run,
which is chaotic, would part from `train`'s for that alone (bench/README.md, learnability).
Imported by `accuracy.py`, `learnability.py` and `train_throughput.py`; not run on its own."""

from __future__ import annotations

import random
import time

import cv2
import mxnet as mx
import numpy as np
from data_loader import GluonDataset  # bench/data_loader.py: samples read the GluonCV way
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform
from gluoncv.loss import SSDMultiBoxLoss
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
from mxnet import autograd, gluon

from ssd_sagemaker.data.transforms.augmentation import resize_interpolation
from ssd_sagemaker.training.loop import EpochResult

MOMENTUM, WEIGHT_DECAY = 0.9, 0.0005  # train_ssd.py's defaults, and `train`'s


def seed_everything(seed: int) -> None:
    """As `train` seeds before building the network, so both sides start from the same
    weights."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def train_anchors(net: gluon.HybridBlock, image_shape: int) -> mx.nd.NDArray:
    """train_ssd.py's `get_dataloader`: anchors from a train-mode forward of a fake image."""
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    return anchors.as_in_context(mx.cpu())


def square_resize(src: mx.nd.NDArray, label: np.ndarray, size: int
                  ) -> tuple[mx.nd.NDArray, np.ndarray]:
    """`timage.imresize(src, size, size, interp=9)` and `tbbox.resize`, the resize done by
    opencv-python (module docstring)."""
    height, width, _ = src.shape
    resized = cv2.resize(src.asnumpy(), (size, size),
                         interpolation=resize_interpolation(width, height, size))
    return (mx.nd.array(resized, dtype=np.uint8),
            tbbox.resize(label, (width, height), (size, size)))


class ResizeTrainTransform(SSDDefaultTrainTransform):
    """`SSDDefaultTrainTransform` without colour jitter, expansion and crop: resize to the
    square (interp=9, as `train`'s `none` and validation), flip horizontally with probability
    0.5 when `flip`, then the preset's normalisation and target generator."""

    def __init__(self, image_shape: int, anchors: mx.nd.NDArray, flip: bool):
        super().__init__(image_shape, image_shape, anchors)
        self._flip = flip

    def __call__(self, src, label):
        img, bbox = square_resize(src, label, self._width)
        if self._flip:
            img, flips = timage.random_flip(img, px=0.5)
            bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]),
            mx.nd.array(bbox[np.newaxis, :, 4:5]))
        return img, cls_targets[0], box_targets[0]


class ResizeValTransform(SSDDefaultValTransform):
    """`SSDDefaultValTransform` with `square_resize`: resize, normalise, boxes scaled."""

    def __call__(self, src, label):
        img, bbox = square_resize(src, label, self._width)
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        return img, bbox.astype(img.dtype)


def train_transform(image_shape: int, anchors: mx.nd.NDArray, augmentation: str = "ssd"):
    """The reference's transform for `train`'s `augmentation` (ssd: GluonCV's preset)."""
    if augmentation == "ssd":
        return SSDDefaultTrainTransform(image_shape, image_shape, anchors)
    return ResizeTrainTransform(image_shape, anchors, flip=augmentation == "flip")


def train_loader(samples, anchors, image_shape: int, batch: int, workers: int,
                 augmentation: str = "ssd", shuffle: bool = True) -> gluon.data.DataLoader:
    dataset = GluonDataset(samples).transform(train_transform(image_shape, anchors,
                                                              augmentation))
    return gluon.data.DataLoader(dataset, batch, shuffle=shuffle, last_batch="rollover",
                                 batchify_fn=Tuple(Stack(), Stack(), Stack()),
                                 num_workers=workers)


def validation_loader(samples, image_shape: int, batch: int,
                      workers: int) -> gluon.data.DataLoader:
    dataset = GluonDataset(samples).transform(ResizeValTransform(image_shape, image_shape))
    return gluon.data.DataLoader(dataset, batch, shuffle=False, last_batch="keep",
                                 batchify_fn=Tuple(Stack(), Pad(pad_val=-1)),
                                 num_workers=workers)


def sgd_trainer(net: gluon.HybridBlock, learning_rate: float,
                optimizer: str = "sgd") -> gluon.Trainer:
    """train_ssd.py's SGD; `adam`: Adam with GluonCV's defaults, as `train` builds it."""
    settings = ({"learning_rate": learning_rate, "wd": WEIGHT_DECAY, "momentum": MOMENTUM}
                if optimizer == "sgd" else {"learning_rate": learning_rate})
    return gluon.Trainer(net.collect_params(), optimizer, settings)


def train_epoch(net: gluon.HybridBlock, loader, trainer: gluon.Trainer,
                ctx: list[mx.Context], loss_fn: SSDMultiBoxLoss | None = None,
                max_batches: int | None = None) -> EpochResult:
    """train_ssd.py's inner loop, verbatim in substance (logging left out)."""
    loss_fn = loss_fn or SSDMultiBoxLoss()
    ce_metric, smoothl1_metric = mx.metric.Loss("CrossEntropy"), mx.metric.Loss("SmoothL1")
    net.hybridize(static_alloc=True, static_shape=True)
    started, images = time.perf_counter(), 0
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0)
        cls_targets = gluon.utils.split_and_load(batch[1], ctx_list=ctx, batch_axis=0)
        box_targets = gluon.utils.split_and_load(batch[2], ctx_list=ctx, batch_axis=0)
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in data:
                cls_pred, box_pred, _ = net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            sum_loss, cls_loss, box_loss = loss_fn(cls_preds, box_preds, cls_targets,
                                                   box_targets)
            autograd.backward(sum_loss)
        trainer.step(1)
        batch_size = batch[0].shape[0]
        ce_metric.update(0, [loss * batch_size for loss in cls_loss])
        smoothl1_metric.update(0, [loss * batch_size for loss in box_loss])
        images += batch_size
    return EpochResult(ce_metric.get()[1], smoothl1_metric.get()[1], images,
                          time.perf_counter() - started)


def validate(net: gluon.HybridBlock, loader, ctx: list[mx.Context],
             iou_threshold: float = 0.5) -> tuple[float, float]:
    """train_ssd.py's `validate`: (VOC07 11-point mAP, area mAP) by GluonCV's own metrics."""
    eleven, area = VOC07MApMetric(iou_threshold), VOCMApMetric(iou_threshold)
    net.set_nms(nms_thresh=0.45, nms_topk=400)  # also drops the cached training graph
    net.hybridize(static_alloc=True, static_shape=True)
    for batch in loader:
        data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0, even_split=False)
        label = gluon.utils.split_and_load(batch[1], ctx_list=ctx, batch_axis=0,
                                           even_split=False)
        det_bboxes, det_ids, det_scores, gt_bboxes, gt_ids, gt_difficults = [], [], [], [], [], []
        for x, y in zip(data, label):
            ids, scores, bboxes = net(x)
            det_ids.append(ids)
            det_scores.append(scores)
            det_bboxes.append(bboxes.clip(0, batch[0].shape[2]))
            gt_ids.append(y.slice_axis(axis=-1, begin=4, end=5))
            gt_bboxes.append(y.slice_axis(axis=-1, begin=0, end=4))
            gt_difficults.append(y.slice_axis(axis=-1, begin=5, end=6)
                                 if y.shape[-1] > 5 else None)
        for metric in (eleven, area):
            metric.update(det_bboxes, det_ids, det_scores, gt_bboxes, gt_ids, gt_difficults)
    return float(eleven.get()[1]), float(area.get()[1])
