"""Pictures a person reads: a drawn image shows the detections at or above the drawing
threshold (default 0.5; `SSD_DRAW_THRESHOLD`, the `draw_threshold` custom attribute,
`predict --draw-threshold`) while the JSON keeps the built-in's defaults; boxes without an
area are never returned; `predict` logs what it drew, counted by class."""

from __future__ import annotations

import json
import logging

import mxnet as mx
import numpy as np
import pytest

from cli_runner import run_cli
from serving_samples import CLASSES, StubPredictor, encode, noise
from ssd_sagemaker.model.artifact import ModelInfo
from ssd_sagemaker.serving.attributes import detection_limits
from ssd_sagemaker.serving.config import DetectionLimits, read_request_limits
from ssd_sagemaker.serving.local_predict import predict_files
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import InvalidAttribute


def test_the_draw_threshold_defaults_to_a_half_and_comes_from_every_source():
    assert DetectionLimits().draw_threshold == 0.5 and DetectionLimits().score_threshold == 0
    assert read_request_limits({"SSD_DRAW_THRESHOLD": "0.3"})[1].draw_threshold == 0.3
    limits = detection_limits("draw_threshold=0.7,score_threshold=0.1", DetectionLimits())
    assert (limits.draw_threshold, limits.score_threshold) == (0.7, 0.1)
    with pytest.raises(InvalidAttribute, match="draw_threshold='2' is invalid"):
        detection_limits("draw_threshold=2", DetectionLimits())


class _FixedNetwork:
    """The exported network's three outputs for one image, as the predictor reads them."""

    def __init__(self, rows):
        rows = np.array(rows, np.float32)
        self.outputs = (mx.nd.array(rows[None, :, :1]), mx.nd.array(rows[None, :, 1:2]),
                        mx.nd.array(rows[None, :, 2:]))

    def __call__(self, tensor):
        return self.outputs


def test_boxes_without_an_area_and_padding_rows_are_never_returned():
    predictor = Predictor.__new__(Predictor)
    predictor.info = ModelInfo(CLASSES, 300, "vgg-16", 0.45)
    predictor._context = mx.cpu()
    predictor._lock = __import__("threading").Lock()
    predictor._net = _FixedNetwork([
        [0, 0.99, 30, 30, 30, 90],     # a vertical line: no area
        [1, 0.95, 10, 10, 150, 150],   # a box
        [0, 0.91, 400, 10, 500, 90],   # right of the image: a line after clipping
        [-1, -1, -1, -1, -1, -1],      # NMS padding
        [1, 0.50, 60, 60, 60.5, 61],   # small but with an area
    ])
    rows = predictor.detect(noise(120, 90))
    assert [round(row[1], 2) for row in rows] == [0.95, 0.5]
    assert all(row[4] > row[2] and row[5] > row[3] for row in rows)


def test_predict_logs_what_it_drew_by_class(tmp_path, caplog):
    image = tmp_path / "in" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(encode(noise(64, 48)))
    with caplog.at_level(logging.INFO, logger="ssd_sagemaker.serving.local_predict"):
        predict_files(StubPredictor(), [image], tmp_path / "out", 1_000_000,
                      DetectionLimits(draw_threshold=0.4))
    assert f"{image}: 3 detections; drawn at score >= 0.4: 1 circle, 1 square" in caplog.text
    assert len(json.loads((tmp_path / "out" / "a.json").read_text())["prediction"]) == 3


def test_predict_refuses_a_bad_draw_threshold_naming_the_option(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(encode(noise(64, 48)))
    (tmp_path / "model").mkdir()
    result = run_cli(tmp_path, "predict", str(image), "--model-dir", str(tmp_path / "model"),
                     "--draw-threshold", "high", timeout=120)
    assert result.returncode == 1
    assert "ClientError: --draw-threshold: draw_threshold='high' is invalid: expected a number " \
        "from 0 to 1." in result.stdout
