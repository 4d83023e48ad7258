"""Transforms: validation resizes and normalises exactly as serving's `network_input` does
(train/serve parity); the training transform returns the network's inputs and targets, also
for images without objects; both survive pickling (they run in worker processes)."""

from __future__ import annotations

import pickle

import mxnet as mx
import numpy as np
import pytest

from anchor_grid import anchors
from ssd_sagemaker.data.transforms.presets import (
    MEAN,
    STD,
    TrainTransform,
    network_input,
    to_tensor,
    training_transform,
    validation_transform,
)


@pytest.mark.parametrize("width, height", [(500, 400), (200, 150), (320, 240)])
def test_validation_matches_serving(width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    label = np.array([[50, 40, 150, 120, 2, 0]], np.float32)
    tensor, resized = validation_transform(300)(image, label)
    served = network_input(mx.nd.array(image, dtype=np.uint8), 300)[0].asnumpy()
    assert tensor.shape == (3, 300, 300) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, served, atol=0.05)  # OpenCV builds may round differently
    assert np.abs(tensor - served).mean() < 0.005
    np.testing.assert_allclose(resized[0], [50 * 300 / width, 40 * 300 / height,
                                            150 * 300 / width, 120 * 300 / height, 2, 0],
                               rtol=1e-5)


def test_normalisation_is_bit_identical_to_mxnet_and_gluoncv() -> None:
    """Every uint8 value in every channel gives exactly what `mx.nd.image.to_tensor` +
    `normalize` give (GluonCV's presets, serving): the learnability benchmark's same-batches
    comparison relies on it, since a 5e-7 rounding difference changes a from-scratch run."""
    values = np.arange(256)
    image = np.stack([np.roll(values, shift) for shift in (0, 85, 170)], -1)
    image = image.astype(np.uint8).reshape(16, 16, 3)
    expected = mx.nd.image.normalize(mx.nd.image.to_tensor(mx.nd.array(image, dtype=np.uint8)),
                                     mean=MEAN, std=STD).asnumpy()
    assert np.array_equal(to_tensor(image), expected)
    assert all(len(np.unique(image[..., channel])) == 256 for channel in range(3))


def test_training_outputs() -> None:
    transform = training_transform(300, mx.nd.array(anchors()[None]))
    transform = pickle.loads(pickle.dumps(transform))
    assert isinstance(transform, TrainTransform)
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = 255
    for label in (np.array([[100, 50, 200, 150, 1, 0]], np.float32), np.zeros((0, 6), np.float32)):
        tensor, cls, box = transform(image, label, rng=np.random.default_rng(0))
        assert tensor.shape == (3, 300, 300) and tensor.dtype == np.float32
        assert cls.shape == (len(anchors()),) and box.shape == (len(anchors()), 4)
        assert set(np.unique(cls)) <= {0.0, 2.0}
        assert (cls > 0).any() == (len(label) > 0)


def test_gluoncv_style_call_with_an_ndarray_gets_ndarrays() -> None:
    """Callers that pass mx.image.imread's NDArray (as with GluonCV's presets) and stack the
    outputs with mx.nd keep working."""
    image = mx.nd.array(np.zeros((120, 160, 3)), dtype=np.uint8)
    label = np.array([[10, 10, 60, 60, 0]], np.float32)  # five columns, GluonCV's minimum
    outputs = training_transform(300, mx.nd.array(anchors()[None]))(image, label)
    assert all(isinstance(output, mx.nd.NDArray) for output in outputs)
    tensor, resized = validation_transform(300)(image, label)
    assert tensor.shape == (3, 300, 300) and isinstance(resized, mx.nd.NDArray)


def test_training_without_augmentation_sees_what_validation_sees() -> None:
    """`augmentation=none`: the training image is the validation (and serving) tensor, and the
    targets encode the boxes scaled with it, whatever the seed."""
    image = np.zeros((240, 320, 3), np.uint8)
    image[40:120, 20:100] = 255
    label = np.array([[20, 40, 100, 120, 1, 0]], np.float32)
    transform = pickle.loads(pickle.dumps(training_transform(300, mx.nd.array(anchors()[None]),
                                                             "none")))
    tensor, cls, box = transform(image, label, rng=np.random.default_rng(0))
    expected_tensor, scaled = validation_transform(300)(image, label)
    np.testing.assert_array_equal(tensor, expected_tensor)
    expected_cls, expected_box = transform.encoder(scaled[:, :4], scaled[:, 4].astype(np.int64))
    np.testing.assert_array_equal(cls, expected_cls)
    np.testing.assert_array_equal(box, expected_box)
    again = transform(image, label, rng=np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(again, (tensor, cls, box)))
    # The default, GluonCV's recipe, draws from the rng and changes the image.
    augmented = training_transform(300, mx.nd.array(anchors()[None]))(
        image, label, rng=np.random.default_rng(0))
    assert not np.array_equal(augmented[0], tensor)
