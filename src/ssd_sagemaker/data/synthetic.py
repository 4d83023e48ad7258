"""The seeded demo dataset: filled circles, squares and triangles on varied backgrounds, written
as an image channel plus a JSON annotation channel in SageMaker's format. The same seed writes
the same files, so demos, tests and benchmarks are reproducible without downloads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
JPEG_QUALITY = 90
# Intersection over the smaller box: unlike IoU, it also stops a big shape covering a small one.
MAX_OVERLAP = 0.3
PLACEMENT_ATTEMPTS = 50
MIN_COLOUR_DISTANCE = 120.0  # Euclidean, in 0-255 BGR units: shapes stand out from the ground
# The plain style (the CPU demo's easy data): one colour per class on a mid-grey ground.
PLAIN_CLASS_COLOURS: tuple[tuple[int, int, int], ...] = ((0, 0, 230), (0, 200, 0), (230, 0, 0))
PLAIN_GROUND = 128

Box = tuple[int, int, int, int]  # left, top, width, height in pixels (the annotation's form)


def draw_shape(image: np.ndarray, class_id: int, left: int, top: int, size: int,
               colour: tuple[int, int, int], apex: float = 0.5) -> Box:
    """Draw one filled shape inside the `size`-pixel square at (left, top) and return its tight
    box, computed from the geometry (pixels covered, hence width = last - first + 1)."""
    last = size - 1
    if CLASS_NAMES[class_id] == "circle":
        radius = last // 2
        centre = (left + radius, top + radius)
        cv2.circle(image, centre, radius, colour, thickness=-1, lineType=cv2.LINE_8)
        return centre[0] - radius, centre[1] - radius, 2 * radius + 1, 2 * radius + 1
    if CLASS_NAMES[class_id] == "square":
        cv2.rectangle(image, (left, top), (left + last, top + last), colour, thickness=-1)
        return left, top, size, size
    points = np.array([(left + round(apex * last), top), (left, top + last),
                       (left + last, top + last)], dtype=np.int32)
    cv2.fillPoly(image, [points], colour, lineType=cv2.LINE_8)
    xs, ys = points[:, 0], points[:, 1]
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A solid colour, a linear gradient or smooth noise, so the detector cannot key on one."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3)).astype(np.uint8)
    if kind == 1:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        start, end = rng.integers(0, 256, (2, 3)).astype(np.float32)
        return (start + ramp[..., None] * (end - start)).astype(np.uint8)
    coarse = rng.uniform(0, 255, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3))
    smooth = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth, 0, 255).astype(np.uint8)


def _overlap(a: Box, b: Box) -> float:
    inter_w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    inter_h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(inter_w, 0) * max(inter_h, 0) / float(min(a[2] * a[3], b[2] * b[3]))


def _colour(rng: np.random.Generator, ground: np.ndarray) -> tuple[int, int, int]:
    """A random colour far enough from the ground under the shape; its complement otherwise."""
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - ground) >= MIN_COLOUR_DISTANCE:
            red, green, blue = (int(c) for c in colour)
            return red, green, blue
    red, green, blue = (255 if c < 128 else 0 for c in ground)
    return red, green, blue


def _render(rng: np.random.Generator,
            plain: bool = False) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """One image and its (class_id, box) objects; `plain`: a grey ground, one colour per class,
    one or two larger shapes (0.25-0.5 of the shorter side) instead of one to three."""
    width, height = int(rng.integers(256, 401)), int(rng.integers(224, 321))
    if plain:
        image = np.full((height, width, 3), PLAIN_GROUND, dtype=np.uint8)
    else:
        image = _background(rng, width, height).copy()
    shorter = min(width, height)
    smallest, largest, most = (0.25, 0.5, 2) if plain else (0.15, 0.45, 3)
    objects: list[tuple[int, Box]] = []
    for _ in range(int(rng.integers(1, most + 1))):
        for _attempt in range(PLACEMENT_ATTEMPTS):
            size = int(rng.integers(round(smallest * shorter), round(largest * shorter) + 1))
            left = int(rng.integers(0, width - size + 1))
            top = int(rng.integers(0, height - size + 1))
            square = (left, top, size, size)
            if all(_overlap(square, box) <= MAX_OVERLAP for _, box in objects):
                break
        else:
            continue  # no room left for another shape: fewer objects in this image
        class_id = int(rng.integers(len(CLASS_NAMES)))
        ground = image[top:top + size, left:left + size].reshape(-1, 3).mean(axis=0)
        colour = PLAIN_CLASS_COLOURS[class_id] if plain else _colour(rng, ground)
        box = draw_shape(image, class_id, left, top, size, colour,
                         apex=float(rng.uniform()))
        objects.append((class_id, box))
    return image, objects


def write_annotated_channel(image_dir: Path, annotation_dir: Path, count: int, seed: int,
                            prefix: str = "img", plain: bool = False) -> list[Path]:
    """Write `count` JPEGs into `image_dir` and one `<basename>.json` annotation each into
    `annotation_dir`; the same seed writes the same files. `plain` draws the easy style (see
    `_render`)."""
    image_dir, annotation_dir = Path(image_dir), Path(annotation_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = [{"class_id": i, "name": name} for i, name in enumerate(CLASS_NAMES)]
    paths = []
    for index in range(count):
        image, objects = _render(rng, plain)
        name = f"{prefix}_{index:04d}"
        path = image_dir / f"{name}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        annotation = {
            "file": path.name,
            "image_size": [{"width": image.shape[1], "height": image.shape[0], "depth": 3}],
            "annotations": [{"class_id": class_id, "left": box[0], "top": box[1],
                             "width": box[2], "height": box[3]} for class_id, box in objects],
            "categories": categories,
        }
        (annotation_dir / f"{name}.json").write_text(json.dumps(annotation, indent=2) + "\n")
        paths.append(path)
    LOG.info("wrote %d synthetic images to %s and their annotations to %s", count, image_dir,
             annotation_dir)
    return paths
