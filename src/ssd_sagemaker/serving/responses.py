"""Response bodies for one image's detections, one function per `ResponseFormat`.

The default is the built-in algorithm's JSON, byte for byte what existing clients parse; the
others add to it (verbose), re-express it in the built-in's annotation style (pixels, as in
training annotations), or draw it on the image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ssd_sagemaker.serving.config import DEFAULT_DRAW_THRESHOLD
from ssd_sagemaker.serving.negotiation import ResponseFormat
from ssd_sagemaker.serving.rendering import class_name, draw_detections, encode_image


def default_json(rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    """`{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`, fractions."""
    return {"prediction": [list(row) for row in rows]}


def verbose_json(rows: Sequence[Sequence[float]], width: int, height: int,
                 classes: Sequence[str]) -> dict[str, Any]:
    """The default JSON plus each row's class name and the image size the fractions refer to."""
    body = default_json(rows)
    body["class_names"] = [class_name(classes, row[0]) for row in rows]
    body["image_size"] = {"width": width, "height": height}
    return body


def annotation_json(rows: Sequence[Sequence[float]], width: int, height: int
                    ) -> dict[str, Any]:
    """The built-in's `application/json;annotation=1` style: boxes as left/top/width/height in
    pixels, like the training annotation files."""
    annotations = []
    for class_id, score, x1, y1, x2, y2 in rows:
        annotations.append({
            "class_id": int(class_id), "score": score,
            "left": round(x1 * width, 2), "top": round(y1 * height, 2),
            "width": round((x2 - x1) * width, 2), "height": round((y2 - y1) * height, 2),
        })
    return {"image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": annotations}


def drawn_rows(rows: Sequence[Sequence[float]], draw_threshold: float
               ) -> list[Sequence[float]]:
    """The detections a drawn image shows: those scoring at least `draw_threshold`."""
    return [row for row in rows if row[1] >= draw_threshold]


def response_body(response_format: ResponseFormat, rows: Sequence[Sequence[float]],
                  image: Any, classes: Sequence[str],
                  draw_threshold: float = DEFAULT_DRAW_THRESHOLD) -> bytes:
    """The encoded body of `response_format` for detections `rows` on an HWC RGB `image`: any
    array with a shape, and a numpy array when `response_format.is_image`, where only the rows
    scoring at least `draw_threshold` are drawn."""
    height, width = image.shape[:2]
    if response_format.is_image:
        return encode_image(draw_detections(image, drawn_rows(rows, draw_threshold), classes),
                            response_format.name.lower())
    if response_format is ResponseFormat.VERBOSE_JSON:
        body = verbose_json(rows, width, height, classes)
    elif response_format is ResponseFormat.ANNOTATION_JSON:
        body = annotation_json(rows, width, height)
    else:
        body = default_json(rows)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
