"""Detect objects with a model exported by `ssd-sagemaker export --format onnx`, without MXNet:
onnxruntime, numpy and OpenCV only (pinned in examples/onnx_requirements.txt).

    pip install -r examples/onnx_requirements.txt
    python examples/onnx_predict.py exported/model.onnx photo.jpg more/*.png

One JSON line per image, in the SageMaker built-in algorithm's format (what the endpoint
answers): `{"image": PATH, "prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`,
coordinates as fractions of the image, best score first. An image that cannot be read is named
on stderr and the exit code is 1 (the other images are still predicted).

The exported graph stops before non-maximum suppression (MXNet's ONNX converter would suppress
across classes; the model suppresses within each class), so this script does what the model's
NMS and the endpoint do after the network, with the settings in `model_info.json` beside the
model: keep (anchor, class) rows scoring above the valid threshold, take the `top_k` best
(stable sort, class-major row order), suppress within each class at IoU above the threshold in
float32 as MXNet's `box_nms` does, keep the first `max_detections`, clip to the image and drop
boxes without an area. tests/integration/test_onnx_parity.py holds it to the endpoint's output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime

LOG = logging.getLogger("onnx_predict")
INFO_FILE = "model_info.json"
SUPPORTED_FORMAT = ("ssd-sagemaker-onnx", 1)


def read_info(model: Path) -> dict[str, Any]:
    """The runner's description written beside the model; a clear error when it is not."""
    path = model.parent / INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {path} cannot be read ({error}); it is written beside "
                         f"model.onnx by `ssd-sagemaker export --format onnx`") from None
    if (info.get("format"), info.get("format_version")) != SUPPORTED_FORMAT:
        raise SystemExit(f"error: {path} is not format {SUPPORTED_FORMAT[0]} version "
                         f"{SUPPORTED_FORMAT[1]}; export the model again with this version")
    return info


def read_image(path: Path) -> np.ndarray | None:
    """HWC RGB uint8 in stored pixel order (EXIF orientation not applied, as the endpoint)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def network_input(image: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Resize to the input size (area when both sides shrink, cubic when both grow, linear
    otherwise: MXNet's interp=9) and normalise ((x / 255 - mean) / std in float32), NCHW."""
    size = int(info["input"]["shape"][2])
    height, width = image.shape[:2]
    if size > width and size > height:
        interpolation = cv2.INTER_CUBIC
    elif size < width and size < height:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    resized = cv2.resize(image, (size, size), interpolation=interpolation)
    scaled = resized.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(info["input"]["mean"], dtype=np.float32)
    std = np.asarray(info["input"]["std"], dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1)[None])


def box_nms(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray, nms: dict[str, Any]
            ) -> np.ndarray:
    """Indices of the rows MXNet's `box_nms` (per class) keeps, best score first: rows
    already filtered to the valid ones, in the graph's class-major order."""
    order = np.argsort(-scores, kind="stable")
    if nms["top_k"] is not None:
        order = order[:nms["top_k"]]
    if nms["overlap_threshold"] is None:
        return order
    threshold = np.float32(nms["overlap_threshold"])
    ids, boxes = ids[order], boxes[order]
    sides = boxes[:, 2:] - boxes[:, :2]
    areas = np.where((sides < 0).any(axis=1), np.float32(0), sides[:, 0] * sides[:, 1])
    kept = np.ones(len(order), dtype=bool)
    for ref in range(len(order)):
        if not kept[ref]:
            continue
        later = np.flatnonzero(kept[ref + 1:] & (ids[ref + 1:] == ids[ref])) + ref + 1
        top_left = np.maximum(boxes[later, :2], boxes[ref, :2])
        bottom_right = np.minimum(boxes[later, 2:], boxes[ref, 2:])
        overlap = np.clip(bottom_right - top_left, np.float32(0), None)
        intersection = overlap[:, 0] * overlap[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = intersection / (areas[ref] + areas[later] - intersection)
        kept[later[iou > threshold]] = False
    return order[kept]


def after_nms(scores: np.ndarray, boxes: np.ndarray, nms: dict[str, Any]) -> np.ndarray:
    """What the model's NMS gives for one image's `scores` (anchors x classes) and `boxes`
    (anchors x 4): rows [class_id, score, xmin, ymin, xmax, ymax] in input pixels, best first,
    without the graph's padding rows."""
    classes = scores.shape[1]
    row_scores = scores.T.reshape(-1)  # class-major: row = class * anchors + anchor
    row_ids = np.repeat(np.arange(classes, dtype=np.float32), scores.shape[0])
    row_boxes = np.tile(boxes, (classes, 1))
    valid = np.flatnonzero(row_scores > np.float32(nms["valid_threshold"]))
    kept = valid[box_nms(row_ids[valid], row_scores[valid], row_boxes[valid], nms)]
    if nms["max_detections"] is not None:
        kept = kept[:nms["max_detections"]]
    return np.column_stack([row_ids[kept], row_scores[kept], row_boxes[kept]])


def detections(session: onnxruntime.InferenceSession, info: dict[str, Any],
               image: np.ndarray, score_threshold: float = 0.0, max_detections: int = 100
               ) -> list[list[float]]:
    """[class_id, score, xmin, ymin, xmax, ymax] rows (fractions, best first) for an HWC RGB
    uint8 image, as the endpoint returns them with its default limits."""
    scores, boxes = session.run(["scores", "boxes"],
                                {info["input"]["name"]: network_input(image, info)})
    rows = after_nms(scores[0], boxes[0], info["nms"])
    fractions = np.clip(rows[:, 2:] / float(info["input"]["shape"][2]), 0.0, 1.0)
    has_area = (fractions[:, 2] > fractions[:, 0]) & (fractions[:, 3] > fractions[:, 1])
    found = [[float(c), float(s), *map(float, b)] for c, s, b in
             zip(rows[has_area, 0], rows[has_area, 1], fractions[has_area])]
    found.sort(key=lambda row: -row[1])  # stable: equal scores keep NMS order
    return [row for row in found if row[1] >= score_threshold][:max_detections]


def session_for(model: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model.onnx (model_info.json beside it)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="keep detections scoring at least this (default 0: all)")
    parser.add_argument("--max-detections", type=int, default=100,
                        help="keep at most this many per image (default 100)")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime's threads (default 0: one per core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    info = read_info(args.model)
    session = session_for(args.model, args.threads)
    unreadable = 0
    for path in args.images:
        image = read_image(path)
        if image is None:
            LOG.error("%s: not a readable JPEG or PNG image; skipped", path)
            unreadable += 1
            continue
        rows = detections(session, info, image, args.score_threshold, args.max_detections)
        print(json.dumps({"image": str(path), "prediction": rows}), flush=True)
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
