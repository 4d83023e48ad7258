"""Tiled inference for small objects in large images (SAHI-style): the image is cut into
overlapping square tiles, each tile goes through the network at the network's input size
(so a 25-px object in a 4000-px photo stays 25 px instead of shrinking to 2), the boxes are
mapped back to the whole image, and the duplicates the overlaps create are merged
(serving/tile_merge.py). A box that touches a seam (a tile edge inside the image) is likely a
fragment of an object the neighbouring tile holds whole: it is marked here, so that the merge
prefers a box that touches no seam.

Opt-in per request (`tile=SIZE,overlap=F`), per server (`SSD_TILE`, `SSD_TILE_OVERLAP`) or
per `predict` run (`--tile`, `--tile-overlap`); rows keep the built-in format, coordinates
as fractions of the whole image. Bounded: at most `max_tiles` tiles (`SSD_MAX_TILES`, 400
beyond), and the request's deadline is checked between batches of tiles (503 as soon as it
cannot be met).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.deadline import RequestClock, WorkTimedOut
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import RequestError
from ssd_sagemaker.serving.tile_merge import merge

TILE_BATCH = 4  # tiles per forward: the same batch shape every time (the last one is padded)
# A box edge this close to a seam (fraction of the tile side, at least SEAM_MARGIN_PIXELS) may
# be where the tile cut the object.
SEAM_MARGIN = 0.02
SEAM_MARGIN_PIXELS = 2


class TooManyTiles(RequestError):
    """The tile size and overlap cut the image into more tiles than the server takes (400)."""


@dataclass(frozen=True)
class Tile:
    """A window of the image, in pixels."""

    left: int
    top: int
    width: int
    height: int


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: every `stride` pixels, the last aligned to the end."""
    if length <= size:
        return [0]
    count = math.ceil((length - size) / stride) + 1
    return sorted({min(index * stride, length - size) for index in range(count)})


def tile_grid(width: int, height: int, size: int, overlap: float) -> list[Tile]:
    """Tiles of `size` pixels (the image's side when it is smaller) overlapping by `overlap`
    of a tile, row by row; the last row and column end at the image's edges."""
    tile_width, tile_height = min(size, width), min(size, height)
    stride = max(1, round(size * (1.0 - overlap)))
    return [Tile(left, top, tile_width, tile_height)
            for top in _starts(height, tile_height, stride)
            for left in _starts(width, tile_width, stride)]


def checked_grid(width: int, height: int, size: int, overlap: float, max_tiles: int
                 ) -> list[Tile]:
    """`tile_grid`, or TooManyTiles naming the count, the limit and the ways out."""
    tiles = tile_grid(width, height, size, overlap)
    if len(tiles) > max_tiles:
        raise TooManyTiles(f"tile={size},overlap={overlap:g} cuts this {width}x{height} image "
                           f"into {len(tiles)} tiles, above the limit of {max_tiles} "
                           f"(SSD_MAX_TILES); use larger tiles or less overlap, send a smaller "
                           f"image, or raise SSD_MAX_TILES on the model")
    return tiles


def to_image_rows(rows: Sequence[Sequence[float]], tile: Tile, width: int, height: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A tile's rows ([class, score, xmin, ymin, xmax, ymax], fractions of the tile) as
    fractions of the whole image, and for each whether it touches a seam."""
    found = np.asarray(rows, dtype=np.float64).reshape(-1, 6).copy()
    scale = np.array([tile.width, tile.height, tile.width, tile.height], dtype=np.float64)
    pixels = found[:, 2:] * scale + np.array([tile.left, tile.top, tile.left, tile.top])
    margin = max(SEAM_MARGIN * max(tile.width, tile.height), SEAM_MARGIN_PIXELS)
    cut = np.zeros(len(found), dtype=bool)
    if tile.left > 0:
        cut |= pixels[:, 0] <= tile.left + margin
    if tile.top > 0:
        cut |= pixels[:, 1] <= tile.top + margin
    if tile.left + tile.width < width:
        cut |= pixels[:, 2] >= tile.left + tile.width - margin
    if tile.top + tile.height < height:
        cut |= pixels[:, 3] >= tile.top + tile.height - margin
    found[:, 2:] = pixels / np.array([width, height, width, height], dtype=np.float64)
    return found, cut


def _check_time(clock: RequestClock | None, done: int, total: int, started: float) -> None:
    """WorkTimedOut when the tiles left cannot be done in the time left, at the pace so far."""
    if clock is None or done == total:
        return
    pace = (time.monotonic() - started) / max(done, 1)
    if clock.abandoned or clock.remaining() < pace * (total - done):
        raise WorkTimedOut(f"the image was not processed in time: {done} of its {total} tiles "
                           f"took {time.monotonic() - started:.1f} s, and the rest would not "
                           f"finish within the request's {clock.seconds:g} s; use larger tiles "
                           f"or less overlap, or raise SAGEMAKER_MODEL_SERVER_TIMEOUT")


def detect_tiled(predictor: Predictor, image: np.ndarray, limits: DetectionLimits,
                 clock: RequestClock | None = None) -> list[list[float]]:
    """Rows for the whole HWC RGB image from its tiles of `limits.tile` pixels overlapping by
    `limits.tile_overlap`, merged (see the module docstring); rows scoring below
    `limits.score_threshold` are left out before merging."""
    height, width = image.shape[:2]
    tiles = checked_grid(width, height, limits.tile, limits.tile_overlap, limits.max_tiles)
    min_score = limits.score_threshold
    found, seams, origins = [np.zeros((0, 6))], [np.zeros(0, dtype=bool)], [np.zeros(0, int)]
    started = time.monotonic()
    for first in range(0, len(tiles), TILE_BATCH):
        _check_time(clock, first, len(tiles), started)
        batch = tiles[first:first + TILE_BATCH]
        crops = [image[t.top:t.top + t.height, t.left:t.left + t.width] for t in batch]
        crops += [crops[-1]] * (TILE_BATCH - len(crops))  # padding: its rows are dropped
        for number, (tile, rows) in enumerate(zip(batch, predictor.detect_batch(crops)),
                                              first):
            kept = [row for row in rows if row[1] >= min_score]
            image_rows, cut = to_image_rows(kept, tile, width, height)
            found.append(image_rows)
            seams.append(cut)
            origins.append(np.full(len(image_rows), number))
    return merge(np.concatenate(found), np.concatenate(seams), np.concatenate(origins),
                 predictor.info.nms_threshold, limits.max_detections)
