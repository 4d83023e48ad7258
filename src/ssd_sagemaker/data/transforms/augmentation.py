"""Training-image augmentation in NumPy/OpenCV, one function per `augmentation` hyperparameter
value (`AUGMENTATIONS`): `none` resizes only, as validation and serving do; `flip` adds a
horizontal flip (p=0.5); `ssd` is the recipe of GluonCV's `SSDDefaultTrainTransform`
(photometric distortion; random expand up to 4x onto the mean colour, p=0.5; IoU-constrained
random crop; resize with a random interpolation; horizontal flip, p=0.5) computed faster:

- expand, crop and resize are one geometric map, so only the part of the image that lands in
  the output is resized (GluonCV materialises the up-to-16x larger expanded canvas first);
- the photometric steps (brightness, contrast, saturation, hue) are all affine in RGB, so they
  are composed into one 3x4 matrix and applied in one `cv2.transform` pass on the resized
  patch (GluonCV runs four MXNet ops on the full image). The patch is distorted before it is
  pasted, so the expand fill stays the exact mean colour, as in GluonCV. Unlike GluonCV,
  pixels are clipped to [0, 255] after distortion.

Imports no MXNet (runs in loader worker processes). Randomness comes from the `rng` passed in,
so a seed reproduces an augmentation exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ssd_sagemaker.data.transforms.targets import box_iou

# GluonCV's random_color_distort defaults.
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18.0
GRAY = np.array([0.299, 0.587, 0.114])
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_YIQ_INVERSE = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])

MAX_EXPAND_RATIO = 4.0
# The SSD paper's crop constraints: (min IoU, max IoU) of the crop with every box.
CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, 1.0))
CROP_SCALE = (0.3, 1.0)
CROP_MAX_ASPECT = 2.0
CROP_TRIALS = 50
# MXNet's interpolation codes 0-4, which GluonCV picks from at random.
INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC,
                  cv2.INTER_LANCZOS4)


def resize_interpolation(width: int, height: int, size: int) -> int:
    """MXNet's interp=9 rule (GluonCV's validation preset) for a `width` x `height` image
    resized to `size` x `size`: area when shrinking, cubic when enlarging, bilinear otherwise."""
    if size > width and size > height:
        return cv2.INTER_CUBIC
    if size < width and size < height:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR


def resize(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image resized to `size` x `size` (no aspect kept, as GluonCV's SSD presets) and its
    label rows with the boxes scaled alike: how validation and serving see every image. The
    boxes are scaled in float64, as GluonCV's `bbox.resize`, so they round to the same float32."""
    height, width = image.shape[:2]
    resized = cv2.resize(image, (size, size), interpolation=resize_interpolation(width, height,
                                                                                   size))
    label = label.copy()
    label[:, :4] = label[:, :4].astype(np.float64) * np.array([size / width, size / height] * 2)
    return resized, label


def random_flip(image: np.ndarray, label: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A horizontal flip of the image and its boxes with probability 0.5 (GluonCV's)."""
    if rng.uniform() >= 0.5:
        return image, label
    width = image.shape[1]
    label = label.copy()
    label[:, [0, 2]] = width - label[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), label


def colour_matrix(rng: np.random.Generator) -> np.ndarray | None:
    """The random photometric distortion as a 3x4 affine map of RGB for `cv2.transform`
    (None: identity). Same draws and order as GluonCV's random_color_distort."""
    matrix, bias = np.eye(3), np.zeros(3)  # x' = x @ matrix + bias (x a row vector)
    changed = False

    def then(step: np.ndarray, shift: float = 0.0) -> None:
        nonlocal matrix, bias, changed
        matrix, bias, changed = matrix @ step, bias @ step + shift, True

    if rng.uniform() > 0.5:
        then(np.eye(3), rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA))

    def contrast() -> None:
        if rng.uniform() > 0.5:
            then(np.eye(3) * rng.uniform(*CONTRAST_RANGE))

    def saturation() -> None:
        if rng.uniform() > 0.5:
            alpha = rng.uniform(*SATURATION_RANGE)
            then(alpha * np.eye(3) + (1 - alpha) * np.outer(GRAY, np.ones(3)))

    def hue() -> None:
        if rng.uniform() > 0.5:
            angle = rng.uniform(-HUE_DELTA, HUE_DELTA) * np.pi
            u, w = np.cos(angle), np.sin(angle)
            rotation = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
            then((_YIQ_INVERSE @ rotation @ _YIQ).T)

    steps = (contrast, saturation, hue) if rng.integers(2) else (saturation, hue, contrast)
    for step in steps:
        step()
    if not changed:
        return None
    return np.hstack([matrix.T, bias[:, None]]).astype(np.float32)


def crop_boxes(label: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Rows of `label` whose box centre lies in `crop` (x, y, w, h), clipped to it and moved
    into its coordinates (GluonCV's bbox.crop with allow_outside_center=False)."""
    x, y, w, h = crop
    label = label.copy()
    centres = (label[:, :2] + label[:, 2:4]) / 2
    inside = ((centres >= (x, y)) & (centres < (x + w, y + h))).all(axis=1)
    label[:, :2] = np.maximum(label[:, :2], (x, y)) - (x, y)
    label[:, 2:4] = np.minimum(label[:, 2:4], (x + w, y + h)) - (x, y)
    inside &= (label[:, :2] < label[:, 2:4]).all(axis=1)
    return label[inside]


def random_crop(label: np.ndarray, width: int, height: int,
                rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """GluonCV's random_crop_with_constraints: per constraint the first of 50 random crops
    meeting it, then a random candidate keeping at least one box centre (the whole image is a
    candidate). The 50 trials are drawn and tested at once (GluonCV loops over them)."""
    candidates = [(0, 0, width, height)]
    for min_iou, max_iou in CROP_CONSTRAINTS:
        scale = rng.uniform(*CROP_SCALE, CROP_TRIALS)
        aspect = rng.uniform(np.maximum(1 / CROP_MAX_ASPECT, scale * scale),
                             np.minimum(CROP_MAX_ASPECT, 1 / (scale * scale)))
        crop_h = np.maximum(1, (height * scale / np.sqrt(aspect)).astype(np.int64))
        crop_w = np.maximum(1, (width * scale * np.sqrt(aspect)).astype(np.int64))
        top = (rng.random(CROP_TRIALS) * np.maximum(1, height - crop_h)).astype(np.int64)
        left = (rng.random(CROP_TRIALS) * np.maximum(1, width - crop_w)).astype(np.int64)
        if len(label) == 0:
            return label, (int(left[0]), int(top[0]), int(crop_w[0]), int(crop_h[0]))
        crops = np.stack([left, top, left + crop_w, top + crop_h], axis=1).astype(np.float32)
        iou = box_iou(label[:, :4], crops)  # (boxes, trials)
        low = -np.inf if min_iou is None else min_iou
        high = np.inf if max_iou is None else max_iou
        meets = (iou.min(axis=0) >= low) & (iou.max(axis=0) <= high)
        if meets.any():
            first = int(np.argmax(meets))
            candidates.append((int(left[first]), int(top[first]), int(crop_w[first]),
                               int(crop_h[first])))
    while candidates:
        crop = candidates.pop(int(rng.integers(len(candidates))))
        kept = crop_boxes(label, crop)
        if len(kept):
            return kept, crop
    return label, (0, 0, width, height)


@dataclass(frozen=True)
class Placement:
    """Where the image lands in the square output: source rows/columns [y0:y1, x0:x1] are
    resized onto output [oy0:oy1, ox0:ox1] (empty when the crop holds only expand fill)."""

    source: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    target: tuple[int, int, int, int]  # x0, y0, x1, y1 in output pixels

    @property
    def empty(self) -> bool:
        sx0, sy0, sx1, sy1 = self.source
        tx0, ty0, tx1, ty1 = self.target
        return sx1 <= sx0 or sy1 <= sy0 or tx1 <= tx0 or ty1 <= ty0

    def map_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Image-pixel boxes → output pixels, with the exact scale the patch is resized by."""
        sx0, sy0, sx1, sy1 = self.source
        tx0, ty0, tx1, ty1 = self.target
        scale = np.array([(tx1 - tx0) / (sx1 - sx0), (ty1 - ty0) / (sy1 - sy0)] * 2)
        origin_source = np.array([sx0, sy0] * 2)
        origin_target = np.array([tx0, ty0] * 2)
        return ((boxes - origin_source) * scale + origin_target).astype(np.float32)


def place(image_w: int, image_h: int, offset: tuple[int, int], crop: tuple[int, int, int, int],
          size: int) -> Placement:
    """The image at `offset` in the expanded canvas, cropped by `crop` (canvas pixels) and
    resized to `size` x `size`."""
    cx, cy, cw, ch = crop
    ix0, iy0 = max(cx, offset[0]), max(cy, offset[1])
    ix1, iy1 = min(cx + cw, offset[0] + image_w), min(cy + ch, offset[1] + image_h)
    sx, sy = size / cw, size / ch
    target = (round((ix0 - cx) * sx), round((iy0 - cy) * sy),
              round((ix1 - cx) * sx), round((iy1 - cy) * sy))
    source = (ix0 - offset[0], iy0 - offset[1], ix1 - offset[0], iy1 - offset[1])
    return Placement(source, target)


def augment(image: np.ndarray, label: np.ndarray, size: int, fill: np.ndarray,
            rng: np.random.Generator, photometric: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One random SSD augmentation of an HWC RGB uint8 image and its label rows [xmin, ymin,
    xmax, ymax, class, ...] (pixels) → a `size` x `size` uint8 image and its label."""
    height, width = image.shape[:2]
    colours = colour_matrix(rng) if photometric else None
    offset, canvas_w, canvas_h = (0, 0), width, height
    if rng.uniform() > 0.5:
        ratio = rng.uniform(1, MAX_EXPAND_RATIO)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        offset = (int(rng.integers(canvas_w - width + 1)), int(rng.integers(canvas_h - height + 1)))
    moved = label.copy()
    moved[:, :4] += np.array(offset * 2, dtype=np.float32)
    kept, crop = random_crop(moved, canvas_w, canvas_h, rng)
    placement = place(width, height, offset, crop, size)
    interpolation = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    output = np.empty((size, size, 3), dtype=np.uint8)
    output[...] = fill
    if not placement.empty:
        sx0, sy0, sx1, sy1 = placement.source
        tx0, ty0, tx1, ty1 = placement.target
        patch = cv2.resize(image[sy0:sy1, sx0:sx1], (tx1 - tx0, ty1 - ty0),
                           interpolation=interpolation)
        if colours is not None:
            patch = cv2.transform(patch, colours)
        output[ty0:ty1, tx0:tx1] = patch
        # Boxes in image pixels (crop coordinates + crop origin - offset), then to the output.
        origin = np.array([crop[0] - offset[0], crop[1] - offset[1]] * 2, dtype=np.float32)
        kept = kept.copy()
        kept[:, :4] = np.clip(placement.map_boxes(kept[:, :4] + origin), 0, size)
    else:
        kept = kept[:0]
    kept = kept[(kept[:, 2] > kept[:, 0]) & (kept[:, 3] > kept[:, 1])]
    return random_flip(output, kept, rng)


def flip_and_resize(image: np.ndarray, label: np.ndarray, size: int, fill: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`augmentation=flip`: the validation resize, then a random horizontal flip."""
    return random_flip(*resize(image, label, size), rng)


def resize_only(image: np.ndarray, label: np.ndarray, size: int, fill: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`augmentation=none`: the validation resize; no randomness."""
    return resize(image, label, size)


# (HWC RGB uint8 image, label rows in pixels, output side, expand fill colour, rng) -> the
# `size` x `size` image and its label rows in output pixels.
Augmentation = Callable[[np.ndarray, np.ndarray, int, np.ndarray, np.random.Generator],
                        tuple[np.ndarray, np.ndarray]]
# The values of the `augmentation` hyperparameter (its choices, in this order) and what each
# does to a training image: the one place the choice is made.
AUGMENTATIONS: dict[str, Augmentation] = {"ssd": augment, "flip": flip_and_resize,
                                          "none": resize_only}
