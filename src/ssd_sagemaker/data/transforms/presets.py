"""Image transforms shared by training, validation and serving, so every path normalises pixels
the same way (GluonCV's SSD presets: ImageNet mean/std, plain resize to a square).

`TrainTransform` and `ValTransform` are picklable NumPy/OpenCV callables: loader worker
processes unpickle them, so this module imports MXNet and GluonCV only inside the functions
that take or return NDArrays (`training_transform`, `network_input`).
"""

from __future__ import annotations

import numpy as np

from ssd_sagemaker.data.transforms.augmentation import AUGMENTATIONS, resize
from ssd_sagemaker.data.transforms.targets import SSDTargetEncoder

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# GluonCV's validation preset: area when shrinking, cubic when enlarging, bilinear otherwise.
RESIZE_INTERPOLATION = 9


def to_tensor(image: np.ndarray) -> np.ndarray:
    """HWC RGB uint8 → CHW float32, scaled to [0, 1] and normalised with MEAN/STD in the order
    and precision of `mx.nd.image.to_tensor` + `normalize` ((x / 255 − mean) / std in float32), so
    the result is bit-identical to GluonCV's presets and to serving's `network_input` (a fused
    x · scale − shift differs by up to 5e-7, enough to send from-scratch training elsewhere)."""
    scaled = image.astype(np.float32) / np.float32(255.0)
    normalised = (scaled - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def _as_numpy_call(transform, image, label, rng):
    """GluonCV-style calls with an NDArray image get NDArrays back (callers that stack the
    outputs with mx.nd); the loader passes NumPy and gets NumPy."""
    if not hasattr(image, "asnumpy"):
        return None
    import mxnet as mx

    outputs = transform(image.asnumpy(), np.asarray(label, dtype=np.float32), rng)
    return tuple(mx.nd.array(output, dtype=output.dtype) for output in outputs)


class TrainTransform:
    """Augment as `augmentation` says (`ssd`: colour, expand, crop, flip; `flip`; `none`),
    resize to `image_shape` and encode SSD targets against the network's anchors:
    (image CHW float32, cls_targets (A,), box_targets (A, 4))."""

    def __init__(self, image_shape: int, anchors: np.ndarray, augmentation: str = "ssd"):
        self.image_shape = image_shape
        self.augment = AUGMENTATIONS[augmentation]
        self.encoder = SSDTargetEncoder(anchors)
        self.fill = np.round(np.asarray(MEAN) * 255).astype(np.uint8)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        converted = _as_numpy_call(self, image, label, rng)
        if converted is not None:
            return converted
        rng = rng if rng is not None else np.random.default_rng()
        output, label = self.augment(image, label, self.image_shape, self.fill, rng)
        cls_targets, box_targets = self.encoder(label[:, :4], label[:, 4].astype(np.int64))
        return to_tensor(output), cls_targets, box_targets


class ValTransform:
    """Resize to `image_shape` and normalise, exactly as serving does (`network_input`);
    boxes are scaled with the image: (image CHW float32, label rows in output pixels)."""

    def __init__(self, image_shape: int):
        self.image_shape = image_shape

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        converted = _as_numpy_call(self, image, label, rng)
        if converted is not None:
            return converted
        resized, label = resize(image, label, self.image_shape)
        return to_tensor(resized), label


def training_transform(image_shape: int, anchors, augmentation: str = "ssd") -> TrainTransform:
    """`anchors`: the network's (1, A, 4) centre-form anchors from a train-mode forward;
    `augmentation`: a key of `AUGMENTATIONS` (the hyperparameter's value)."""
    values = anchors.asnumpy() if hasattr(anchors, "asnumpy") else np.asarray(anchors)
    return TrainTransform(image_shape, values.reshape(-1, 4), augmentation)


def validation_transform(image_shape: int) -> ValTransform:
    return ValTransform(image_shape)


def network_input(image, image_shape: int):
    """An HWC RGB uint8 NDArray → the 1×3×S×S float tensor the network takes (as validation)."""
    import mxnet as mx
    from gluoncv.data.transforms.image import imresize

    resized = imresize(image, image_shape, image_shape, interp=RESIZE_INTERPOLATION)
    tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=MEAN, std=STD)
    return tensor.expand_dims(axis=0)
