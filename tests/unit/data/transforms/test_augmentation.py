"""The NumPy/OpenCV augmentations, one per `augmentation` value: `none` only scales boxes (as
validation does), `flip` mirrors them with the image half the time; through the SSD recipe's
expand, crop, resize and flip boxes stay on their objects; images without objects pass; a seed
reproduces an augmentation; the photometric matrix keeps pixels in range and leaves the expand
fill alone."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_sagemaker.data.transforms.augmentation import (
    AUGMENTATIONS,
    augment,
    colour_matrix,
    crop_boxes,
    random_crop,
    resize,
)

FILL = np.array([124, 116, 104], np.uint8)


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A black image with one white rectangle, and its label."""
    height, width = (int(v) for v in rng.integers(100, 400, 2))
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
    image = np.zeros((height, width, 3), np.uint8)
    image[y0:y1, x0:x1] = 255
    return image, np.array([[x0, y0, x1, y1, 1, 0]], np.float32)


@pytest.mark.parametrize("seed", range(0, 300, 50))
def test_boxes_follow_their_object(seed: int) -> None:
    worst = 0.0
    for offset in range(50):
        rng = np.random.default_rng(seed + offset)
        image, label = _scene(rng)
        output, out_label = augment(image, label, 300, FILL, rng, photometric=False)
        assert output.shape == (300, 300, 3) and output.dtype == np.uint8
        (row,) = out_label  # the crop always keeps the object's centre
        assert row[4] == 1
        ys, xs = np.nonzero(output[..., 0] > 200)
        found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        worst = max(worst, float(np.abs(found - row[:4]).max()))
    assert worst <= 3.0  # pixels, interpolation at the edges


def test_image_without_objects() -> None:
    rng = np.random.default_rng(3)
    image, _ = _scene(rng)
    for _ in range(20):
        output, label = augment(image, np.zeros((0, 6), np.float32), 300, FILL, rng)
        assert output.shape == (300, 300, 3) and label.shape == (0, 6)


def test_seed_reproduces() -> None:
    image, label = _scene(np.random.default_rng(1))
    first = augment(image, label, 300, FILL, np.random.default_rng(7))
    second = augment(image, label, 300, FILL, np.random.default_rng(7))
    other = augment(image, label, 300, FILL, np.random.default_rng(8))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_photometric_distortion_is_affine_clipped_and_spares_the_fill() -> None:
    matrices = [colour_matrix(np.random.default_rng(seed)) for seed in range(200)]
    assert any(m is None for m in matrices) and any(m is not None for m in matrices)
    assert all(m.shape == (3, 4) for m in matrices if m is not None)
    # Expanded images keep the exact fill colour around the distorted image.
    rng = np.random.default_rng(0)
    image = np.full((50, 50, 3), 255, np.uint8)
    saw_fill = False
    for _ in range(40):
        output, _ = augment(image, np.zeros((0, 6), np.float32), 300, FILL, rng)
        corners = output[[0, 0, -1, -1], [0, -1, 0, -1]]
        saw_fill |= bool((corners == FILL).all(axis=1).any())
    assert saw_fill


def test_crop_keeps_boxes_whose_centre_is_inside() -> None:
    label = np.array([[0, 0, 10, 10, 0, 0], [40, 40, 60, 60, 1, 0]], np.float32)
    kept = crop_boxes(label, (30, 30, 50, 50))
    np.testing.assert_array_equal(kept, [[10, 10, 30, 30, 1, 0]])
    boxes, crop = random_crop(label, 100, 100, np.random.default_rng(0))
    assert len(boxes) >= 1 and 0 <= crop[0] and crop[0] + crop[2] <= 100


def _two_objects() -> tuple[np.ndarray, np.ndarray]:
    """A 240x320 black image with a red and a green rectangle off-centre, and their label."""
    image = np.zeros((240, 320, 3), np.uint8)
    image[40:120, 20:100, 0] = 255
    image[150:230, 200:300, 1] = 255
    label = np.array([[20, 40, 100, 120, 1, 0], [200, 150, 300, 230, 2, 1]], np.float32)
    return image, label


def _found(output: np.ndarray, channel: int) -> np.ndarray:
    """The bounding box of the pixels bright in `channel` (0: red, 1: green)."""
    ys, xs = np.nonzero(output[..., channel] >= 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_augmentation_names_are_the_hyperparameter_choices() -> None:
    assert list(AUGMENTATIONS) == ["ssd", "flip", "none"]
    assert AUGMENTATIONS["ssd"] is augment


def test_none_only_scales_boxes_and_draws_nothing() -> None:
    image, label = _two_objects()
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    output, out_label = AUGMENTATIONS["none"](image, label, 300, FILL, rng)
    assert rng.bit_generator.state == state  # no randomness: every epoch sees the same batch
    assert output.shape == (300, 300, 3) and output.dtype == np.uint8
    scale = np.array([300 / 320, 300 / 240] * 2, np.float32)
    np.testing.assert_allclose(out_label[:, :4], label[:, :4] * scale, rtol=1e-6)
    np.testing.assert_array_equal(out_label[:, 4:], label[:, 4:])  # class and difficult kept
    np.testing.assert_allclose(_found(output, 0), out_label[0, :4], atol=1.5)
    np.testing.assert_allclose(_found(output, 1), out_label[1, :4], atol=1.5)
    # The very image validation and serving see.
    resized, _ = resize(image, label, 300)
    np.testing.assert_array_equal(output, resized)
    assert AUGMENTATIONS["none"](image, label[:0], 300, FILL, rng)[1].shape == (0, 6)


def test_resize_rounds_boxes_as_gluoncv_bbox_resize() -> None:
    """Boxes scaled in float64 and rounded once to float32, as `gluoncv...bbox.resize` followed
    by the generator's float32 NDArray: the same training targets, bit for bit."""
    from gluoncv.data.transforms import bbox as tbbox

    rng = np.random.default_rng(3)
    for width, height in ((271, 297), (389, 282), (300, 229), (640, 480)):
        label = np.hstack([rng.uniform(0, 200, (40, 4)), np.ones((40, 2))]).astype(np.float32)
        _, ours = resize(np.zeros((height, width, 3), np.uint8), label, 300)
        theirs = tbbox.resize(label, (width, height), (300, 300)).astype(np.float32)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)


def test_flip_mirrors_boxes_with_the_image_half_the_time() -> None:
    image, label = _two_objects()
    resized, scaled = resize(image, label, 300)
    mirrored_boxes = scaled.copy()
    mirrored_boxes[:, [0, 2]] = 300 - scaled[:, [2, 0]]
    flips = 0
    for seed in range(40):
        output, out_label = AUGMENTATIONS["flip"](image, label, 300, FILL,
                                                  np.random.default_rng(seed))
        flipped = not np.array_equal(output, resized)
        flips += flipped
        if flipped:
            np.testing.assert_array_equal(output, resized[:, ::-1])
            np.testing.assert_allclose(out_label, mirrored_boxes, rtol=1e-6)
        else:
            np.testing.assert_allclose(out_label, scaled, rtol=1e-6)
        np.testing.assert_allclose(_found(output, 0), out_label[0, :4], atol=1.5)
        np.testing.assert_allclose(_found(output, 1), out_label[1, :4], atol=1.5)
    assert 10 <= flips <= 30
    # Seeded: the same seed flips the same way.
    first = AUGMENTATIONS["flip"](image, label, 300, FILL, np.random.default_rng(3))
    second = AUGMENTATIONS["flip"](image, label, 300, FILL, np.random.default_rng(3))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_the_hyperparameter_table_names_exactly_the_implemented_augmentations():
    from ssd_sagemaker.augmentation_names import AUGMENTATION_NAMES
    from ssd_sagemaker.data.transforms.augmentation import AUGMENTATIONS
    from ssd_sagemaker.hyperparameters import SPECS

    assert sorted(AUGMENTATION_NAMES) == sorted(AUGMENTATIONS)
    assert next(s for s in SPECS if s.name == "augmentation").choices == AUGMENTATION_NAMES
