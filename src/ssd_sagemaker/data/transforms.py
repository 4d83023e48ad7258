"""Image transforms shared by training, validation and serving, so that every path normalises
pixels the same way (GluonCV's SSD presets: ImageNet mean/std, plain resize to a square)."""

from __future__ import annotations

import mxnet as mx
from gluoncv.data.transforms.image import imresize
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# GluonCV's validation preset: area when shrinking, cubic when enlarging, bilinear otherwise.
RESIZE_INTERPOLATION = 9


def training_transform(image_shape: int, anchors: mx.nd.NDArray) -> SSDDefaultTrainTransform:
    """Augment (colour, expand, crop, flip), resize and encode SSD targets against `anchors`."""
    return SSDDefaultTrainTransform(image_shape, image_shape, anchors.as_in_context(mx.cpu()),
                                    mean=MEAN, std=STD)


def validation_transform(image_shape: int) -> SSDDefaultValTransform:
    """Resize and normalise; boxes are resized with the image."""
    return SSDDefaultValTransform(image_shape, image_shape, mean=MEAN, std=STD)


def network_input(image: mx.nd.NDArray, image_shape: int) -> mx.nd.NDArray:
    """An HWC RGB uint8 image → the 1×3×S×S float tensor the network takes (as validation)."""
    resized = imresize(image, image_shape, image_shape, interp=RESIZE_INTERPOLATION)
    tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=MEAN, std=STD)
    return tensor.expand_dims(axis=0)
