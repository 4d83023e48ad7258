"""The one shape every data format is read into: a `Sample` (where the encoded image is, and its
objects as fractions of the image size), plus the box and class checks all formats share.

Boxes are kept normalised so a sample is valid whatever size its image decodes to (RecordIO
labels are normalised already; JSON and manifest boxes are divided by their `image_size`).
This module imports no MXNet: loader worker processes unpickle samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Boxes may overshoot the image by this many pixels (rounding in annotation tools) and are
# clipped with a warning; further out is an error.
CLIP_TOLERANCE_PIXELS = 1.0


@dataclass(frozen=True)
class RecordRef:
    """A record inside a RecordIO file, read by the worker that decodes it (so the main process
    holds offsets, not gigabytes of image bytes)."""

    path: Path
    offset: int
    image_record: bool = True  # an im2rec record (IRHeader + label + image), else raw bytes


# The `difficult` flags of samples without any: one shared read-only array, not one each.
NO_FLAGS = np.zeros(0, dtype=bool)
NO_FLAGS.flags.writeable = False


@dataclass(frozen=True, slots=True)
class Sample:
    """One training example, whatever the channel format (slotted: a channel holds millions)."""

    origin: str  # names the example in every message: a file, or a record of a file/stream
    image: Path | bytes | RecordRef
    boxes: np.ndarray  # float32 (N, 4): xmin, ymin, xmax, ymax as fractions of width/height
    class_ids: np.ndarray  # int32 (N,)
    difficult: np.ndarray = field(default_factory=lambda: NO_FLAGS)  # (N,) or (0,)

    def label(self, width: int, height: int) -> np.ndarray:
        """GluonCV's label layout for the decoded image: rows of [xmin, ymin, xmax, ymax,
        class_id, difficult] in pixels."""
        label = np.zeros((len(self.class_ids), 6), dtype=np.float32)
        label[:, :4] = self.boxes * np.array([width, height, width, height], dtype=np.float32)
        label[:, 4] = self.class_ids
        if len(self.difficult) == len(self.class_ids):
            label[:, 5] = self.difficult
        return label


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers here; nor an int no float holds)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int of more than 308 digits
        return False


def is_integer(value: Any) -> bool:
    """JSON integers, and floats with an integral value (some tools write 2.0)."""
    return is_number(value) and float(value).is_integer()


def class_id_problem(value: Any, num_classes: int) -> str | None:
    """Why `value` is not a class id of a `num_classes`-class job, or None."""
    if is_integer(value) and 0 <= value < num_classes:
        return None
    return (f"class_id {value!r}; class ids must be integers in [0, {num_classes}) for "
            f"num_classes={num_classes}")


def fit_boxes(boxes: np.ndarray, width: float, height: float,
              names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Boxes (pixels, corners) checked against a `width` x `height` image: clipped with a
    warning when they overshoot by at most `CLIP_TOLERANCE_PIXELS`, an error beyond that or
    when a box is empty. `names[i]` names box i in messages. Returns (boxes, warnings, errors)."""
    warnings: list[str] = []
    errors: list[str] = []
    limits = np.array([0, 0, width, height], dtype=np.float64)
    fitted = boxes.astype(np.float64)
    for index, box in enumerate(fitted.tolist()):  # plain floats: a few boxes, checked fast
        left, top, right, bottom = box
        empty = right <= left or bottom <= top
        over = max(-left, -top, right - width, bottom - height)
        if not empty and over <= 0:
            continue
        name = names[index]
        shown = ", ".join(f"{v:g}" for v in box)
        if empty:
            errors.append(f"{name} [{shown}] has zero or negative width or height; xmax must "
                          f"exceed xmin and ymax must exceed ymin")
        elif over > CLIP_TOLERANCE_PIXELS:
            errors.append(f"{name} [{shown}] lies {over:g} pixels outside the {width:g}x"
                          f"{height:g} image (more than {CLIP_TOLERANCE_PIXELS:g}); fix the box "
                          f"or the image size")
        else:
            fitted[index] = np.clip(fitted[index], limits[:2].tolist() * 2,
                                    limits[2:].tolist() * 2)
            warnings.append(f"{name} [{shown}] overshoots the {width:g}x{height:g} image by "
                            f"{over:g} pixel(s); clipped")
    return fitted.astype(np.float32), warnings, errors


def normalised(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel corner boxes as fractions of the image size."""
    return (boxes / np.array([width, height, width, height], dtype=np.float32)).astype(np.float32)
