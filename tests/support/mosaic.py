"""A mosaic of demo-style images (grey ground, so the seams between them are invisible) with its
labels, and the measures of the tiling acceptance: recall at IoU 0.5 above a score, and the
objects boxed more than once. Shared by tests/integration/test_tiled_inference.py and
bench/tiling.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssd_sagemaker.data.synthetic import PLAIN_GROUND, write_annotated_channel

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Mosaic:
    image: np.ndarray  # HWC RGB uint8
    parts: list[np.ndarray]  # the images it is made of
    offsets: list[tuple[int, int]]  # (left, top) of each part in the mosaic
    labels: np.ndarray  # (N, 5): class, xmin, ymin, xmax, ymax in mosaic pixels

    def to_mosaic_rows(self, rows, part: np.ndarray, offset: tuple[int, int]) -> list[list]:
        """A part's rows (fractions of the part) as fractions of the mosaic."""
        height, width = self.image.shape[:2]
        part_height, part_width = part.shape[:2]
        return [[row[0], row[1], (offset[0] + row[2] * part_width) / width,
                 (offset[1] + row[3] * part_height) / height,
                 (offset[0] + row[4] * part_width) / width,
                 (offset[1] + row[5] * part_height) / height] for row in rows]


def make_mosaic(folder: Path, grid: int, seed: int, count: int | None = None,
                plain: bool = True) -> Mosaic:
    """`count` (default grid x grid) synthetic images (seed `seed`, the demo's plain style or
    the varied one) in rows of `grid` cells of the largest one's size, on the plain ground."""
    paths = write_annotated_channel(folder / "images", folder / "annotations",
                                    grid * grid if count is None else count, seed, plain=plain)
    parts, boxes = [], []
    for path in paths:
        parts.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        doc = json.loads((folder / "annotations" / f"{path.stem}.json").read_text())
        boxes.append([(a["class_id"], a["left"], a["top"], a["left"] + a["width"],
                       a["top"] + a["height"]) for a in doc["annotations"]])
    cell_width = max(part.shape[1] for part in parts)
    cell_height = max(part.shape[0] for part in parts)
    rows = -(-len(parts) // grid)
    image = np.full((rows * cell_height, grid * cell_width, 3), PLAIN_GROUND, np.uint8)
    offsets, labels = [], []
    for index, (part, objects) in enumerate(zip(parts, boxes)):
        left, top = (index % grid) * cell_width, (index // grid) * cell_height
        image[top:top + part.shape[0], left:left + part.shape[1]] = part
        offsets.append((left, top))
        labels += [(c, x0 + left, y0 + top, x1 + left, y1 + top) for c, x0, y0, x1, y1 in objects]
    return Mosaic(image, parts, offsets, np.asarray(labels, dtype=np.float64))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0,
                     None)
    inter = width * height
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + areas - inter)


def _pixels(rows, score: float, size: tuple[int, int]) -> np.ndarray:
    """The rows scoring at least `score`, boxes in pixels of an image of `size` (w, h)."""
    width, height = size
    kept = np.asarray([row for row in rows if row[1] >= score], dtype=np.float64).reshape(-1, 6)
    kept[:, 2:] *= [width, height, width, height]
    return kept


def recall(rows, labels: np.ndarray, score: float, image_size: tuple[int, int]) -> float:
    """The fraction of labelled objects that a detection of their class scoring at least `score`
    overlaps by IoU >= 0.5 (each detection matches one object, best IoU first)."""
    found = _pixels(rows, score, image_size)
    used = np.zeros(len(found), dtype=bool)
    matched = 0
    for label in labels:
        candidates = np.flatnonzero((found[:, 0] == label[0]) & ~used)
        if not len(candidates):
            continue
        iou = _iou(label[1:], found[candidates, 2:])
        if iou.max() >= MATCH_IOU:
            used[candidates[int(np.argmax(iou))]] = True
            matched += 1
    return matched / max(len(labels), 1)


def boxed_twice(rows, labels: np.ndarray, score: float, image_size: tuple[int, int]) -> int:
    """Objects that more than one detection scoring at least `score` covers (IoU >= 0.3, or
    the detection lying inside the object: a fragment cut at a seam)."""
    found = _pixels(rows, score, image_size)
    twice = 0
    for label in labels:
        same = found[found[:, 0] == label[0], 2:]
        if not len(same):
            continue
        iou = _iou(label[1:], same)
        width = np.clip(np.minimum(label[3], same[:, 2]) - np.maximum(label[1], same[:, 0]), 0,
                        None)
        height = np.clip(np.minimum(label[4], same[:, 3]) - np.maximum(label[2], same[:, 1]), 0,
                         None)
        inside = width * height / ((same[:, 2] - same[:, 0]) * (same[:, 3] - same[:, 1]))
        twice += int(np.count_nonzero((iou >= 0.3) | (inside >= 0.8)) > 1)
    return twice
