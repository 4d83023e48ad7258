"""Merging the rows of overlapping tiles into one answer for the whole image (serving/tiling.py
cuts the tiles): one box per object, however many tiles saw it and however they cut it.

Boxes of one class are one object when their IoU reaches MERGE_IOU, or when they come from
different tiles and one lies mostly inside the other (intersection over the smaller box,
SEAM_OVERLAP), as SAHI's greedy non-maximum merging by intersection over the smaller box does:
a fragment cut by a seam, or a neighbour tile's loose box of the same object, overlaps the
whole box by little IoU but lies mostly within it. Within one tile, boxes lying within each
other are the network's answer (its NMS kept them, seen: two overlapping objects boxed
together and apart), so an image that is one tile gets what it gets untiled.
"""

from __future__ import annotations

import numpy as np

# Two tiles' boxes of one object disagree more than one forward's duplicates: merged from this
# IoU (or the model's NMS threshold, when lower).
MERGE_IOU = 0.35
# Intersection over the smaller box from which boxes of one class from different tiles are one
# object (SAHI's default for sliced prediction: greedy NMM by IOS at 0.5). On the demo model's
# 5x5 mosaic (docs/tiling.md) each object still boxed twice at IoU 0.35 had two tiles' boxes
# overlapping by IoU 0.27 only, but by 0.53 of the smaller box.
SEAM_OVERLAP = 0.5


def overlaps(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection over the smaller box, of `box` with each of `others`."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0,
                     None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = np.maximum(area + areas - inter, 1e-12)
    return inter / union, inter / np.maximum(np.minimum(area, areas), 1e-12)


def _cluster(rows: np.ndarray, tiles: np.ndarray, index: int, candidates: np.ndarray,
             merge_iou: float) -> np.ndarray:
    """`index` and those of the `candidates` that are the same object: overlapping it by
    `merge_iou`, or lying mostly within it (or it within them) when from another tile."""
    iou, within = overlaps(rows[index, 2:], rows[candidates, 2:])
    other_tile = tiles[candidates] != tiles[index]
    same = (iou >= merge_iou) | (other_tile & (within >= SEAM_OVERLAP))
    return np.union1d(candidates[same], [index])


def _views(rows: np.ndarray, tiles: np.ndarray, index: int, anchor: int, whole: np.ndarray,
           merge_iou: float) -> list[int]:
    """The boxes whose duplicates join the cluster of `index`: the `anchor` taking its place
    when it is cut, and each other tile's best whole box of the cluster agreeing with it by IoU
    (that tile's view of the object, holding the fragments on its other sides). A tile's lesser
    boxes and loose boxes merely lying over the object may lie over a neighbour too."""
    others = whole[~np.isin(tiles[whole], [tiles[index], tiles[anchor]])]  # in score order
    _, first = np.unique(tiles[others], return_index=True)
    best = others[first]
    iou, _ = overlaps(rows[anchor, 2:], rows[best, 2:])
    views = [int(view) for view in best[iou >= merge_iou]]
    return views if anchor == index else [anchor, *views]


def merge(rows: np.ndarray, cut: np.ndarray, tiles: np.ndarray, nms_threshold: float,
          most: int | None = None) -> list[list[float]]:
    """Greedy class-aware merging over the whole image, best score first; each cluster keeps
    its best score. `cut` marks the rows touching a seam, `tiles` the tile each comes from.
    A cluster is the best free box and the boxes of other tiles that are the same object as it
    or as another tile's view of it (`_views`). When the best box touches a seam and its cluster
    holds a box that does not (from the tile that held the object whole), the cluster takes
    that box's coordinates.

    Stops after `most` clusters (the answer's max_detections): clusters come out best score
    first and each depends only on those before it, so the first `most` are the same, and the
    work is `most` passes over the rows instead of one per row (130 tiles of 100 rows: 3.2 s)."""
    merge_iou = min(nms_threshold, MERGE_IOU)
    order = np.argsort(-rows[:, 1], kind="stable")
    rows, cut, tiles = rows[order], cut[order], tiles[order]
    free = np.ones(len(rows), dtype=bool)
    merged: list[list[float]] = []
    for index in range(len(rows)):
        if len(merged) == most:
            break
        if not free[index]:
            continue
        same = np.flatnonzero(free & (rows[:, 0] == rows[index, 0]))
        members = _cluster(rows, tiles, index, same, merge_iou)
        whole = members[~cut[members]]  # in score order
        anchor = int(whole[0]) if cut[index] and len(whole) else index
        for view in _views(rows, tiles, index, anchor, whole, merge_iou):
            members = np.union1d(members, _cluster(rows, tiles, view, same, merge_iou))
        free[members] = False
        merged.append([float(rows[index, 0]), float(rows[index, 1]),
                       *map(float, rows[anchor, 2:])])
    return merged
