"""A small fixed anchor grid for the target-encoder and loader tests (the real SSD has 8732
anchors; these 375 keep the tests fast and the numbers checkable)."""

from __future__ import annotations

import numpy as np


def anchors(size: int = 300) -> np.ndarray:
    """Centre-form anchors on 10x10 and 5x5 grids, three shapes each (pixels)."""
    rows = []
    for cells, scale in ((10, 0.2), (5, 0.45)):
        step = size / cells
        for y in range(cells):
            for x in range(cells):
                for ratio in (1.0, 2.0, 0.5):
                    w, h = scale * size * np.sqrt(ratio), scale * size / np.sqrt(ratio)
                    rows.append(((x + 0.5) * step, (y + 0.5) * step, w, h))
    return np.array(rows, dtype=np.float32)
