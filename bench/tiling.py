"""Tiled inference against whole-image inference on a mosaic of unseen images (docs/tiling.md).

Usage: python bench/tiling.py MODEL_DIR [--grid 5] [--tile 300] [--overlap 0.5] [--seed 7]

Draws grid x grid demo-style images (a seed the demo never trains on), predicts each one alone,
then the whole mosaic at once and tiled, and prints the recall of each (IoU 0.5, score >= 0.5),
the objects boxed more than once, images/s of each way, and the seconds per tile against the
seconds per image of a forward of TILE_BATCH whole images (tiling should cost the forward
only). Logs go to stderr; the results are one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from mosaic import boxed_twice, make_mosaic, recall
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.tiling import TILE_BATCH, detect_tiled, tile_grid

SCORE = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--tile", type=int, default=300)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    predictor = Predictor(args.model_dir)
    with tempfile.TemporaryDirectory() as folder:
        mosaic = make_mosaic(Path(folder), args.grid, args.seed)
    height, width = mosaic.image.shape[:2]
    started = time.monotonic()
    alone = [row for image, offset in zip(mosaic.parts, mosaic.offsets)
             for row in mosaic.to_mosaic_rows(predictor.detect(image), image, offset)]
    alone_seconds = time.monotonic() - started
    started = time.monotonic()
    whole = predictor.detect(mosaic.image)
    whole_seconds = time.monotonic() - started
    started = time.monotonic()
    tiled = detect_tiled(predictor, mosaic.image,
                         DetectionLimits(tile=args.tile, tile_overlap=args.overlap))
    tiled_seconds = time.monotonic() - started
    started = time.monotonic()
    predictor.detect_batch(mosaic.parts[:TILE_BATCH])
    batch_seconds = time.monotonic() - started
    tiles = len(tile_grid(width, height, args.tile, args.overlap))
    labels, size = mosaic.labels, (width, height)
    results = {
        "mosaic": f"{width}x{height}", "images": len(mosaic.parts), "objects": len(labels),
        "tile": args.tile, "overlap": args.overlap,
        "recall_one_by_one": recall(alone, labels, SCORE, size),
        "recall_whole_mosaic": recall(whole, labels, SCORE, size),
        "recall_tiled": recall(tiled, labels, SCORE, size),
        "boxed_twice_one_by_one": boxed_twice(alone, labels, SCORE, size),
        "boxed_twice_tiled": boxed_twice(tiled, labels, SCORE, size),
        "seconds_one_by_one": round(alone_seconds, 2),
        "seconds_whole_mosaic": round(whole_seconds, 2),
        "seconds_tiled": round(tiled_seconds, 2),
        "mosaics_per_second_whole": round(1 / whole_seconds, 3),
        "mosaics_per_second_tiled": round(1 / tiled_seconds, 3),
        "tiles": tiles, "seconds_per_tile": round(tiled_seconds / tiles, 3),
        "seconds_per_image_in_a_batch": round(batch_seconds / TILE_BATCH, 3),
    }
    results["tiled_over_one_by_one"] = round(
        results["recall_tiled"] / max(results["recall_one_by_one"], 1e-9), 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
