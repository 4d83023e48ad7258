"""responses.py + rendering.py: the default JSON is the built-in's; verbose adds names and size;
the annotation style is in pixels; the image response has the boxes drawn on the input."""

import json

import cv2
import numpy as np
import pytest

from serving_samples import CLASSES
from ssd_sagemaker.serving.negotiation import ResponseFormat
from ssd_sagemaker.serving.rendering import PALETTE, draw_detections
from ssd_sagemaker.serving.responses import (
    annotation_json,
    default_json,
    response_body,
    verbose_json,
)

ROWS = [[0.0, 0.9, 0.1, 0.2, 0.5, 0.6], [1.0, 0.4, 0.0, 0.0, 1.0, 1.0]]


def test_default_json_is_the_builtin_shape():
    assert default_json(ROWS) == {"prediction": ROWS}
    body = response_body(ResponseFormat.JSON, ROWS, np.zeros((40, 50, 3), np.uint8), CLASSES)
    assert json.loads(body) == {"prediction": ROWS}


def test_verbose_adds_class_names_and_image_size():
    assert verbose_json(ROWS, 400, 300, CLASSES) == {
        "prediction": ROWS, "class_names": ["circle", "square"],
        "image_size": {"width": 400, "height": 300}}


def test_an_id_outside_the_model_classes_is_named_by_its_number():
    assert verbose_json([[7.0, 0.5, 0, 0, 1, 1]], 10, 10, CLASSES)["class_names"] == ["7"]


def test_annotation_style_is_in_pixels():
    assert annotation_json(ROWS, 400, 300) == {
        "image_size": [{"width": 400, "height": 300, "depth": 3}],
        "annotations": [
            {"class_id": 0, "score": 0.9, "left": 40.0, "top": 60.0, "width": 160.0,
             "height": 120.0},
            {"class_id": 1, "score": 0.4, "left": 0.0, "top": 0.0, "width": 400.0,
             "height": 300.0}]}


@pytest.mark.parametrize("response_format", [ResponseFormat.JPEG, ResponseFormat.PNG])
def test_image_response_is_the_input_with_boxes(response_format):
    image = np.full((300, 400, 3), 255, np.uint8)
    body = response_body(response_format, ROWS[:1], image, CLASSES)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    assert decoded.shape == image.shape
    # the box of class 0 spans x 40..200, y 60..180 (of 399 x 299): its edges have the class
    # colour (red, blurred by JPEG), its inside and the image far from it are untouched
    left_edge, inside, corner = decoded[120, 40].astype(int), decoded[120, 120], decoded[290, 390]
    assert PALETTE[0][0] > 200 > max(PALETTE[0][1:])
    assert left_edge[0] - left_edge[1] > 50 and left_edge[0] - left_edge[2] > 50
    assert inside.min() > 240 and corner.min() > 240


def test_drawing_leaves_the_input_untouched():
    image = np.zeros((50, 60, 3), np.uint8)
    drawn = draw_detections(image, ROWS, CLASSES)
    assert image.max() == 0 and drawn.max() > 0


@pytest.mark.parametrize("response_format", [ResponseFormat.JPEG, ResponseFormat.PNG])
def test_a_drawn_image_shows_only_the_rows_at_or_above_the_draw_threshold(response_format):
    image = np.full((300, 400, 3), 255, np.uint8)
    at_half = response_body(response_format, ROWS, image, CLASSES, draw_threshold=0.5)
    assert at_half == response_body(response_format, ROWS[:1], image, CLASSES, draw_threshold=0)
    assert at_half != response_body(response_format, ROWS, image, CLASSES, draw_threshold=0.4)
    # the JSON answers are not filtered by the drawing threshold
    assert json.loads(response_body(ResponseFormat.JSON, ROWS, image, CLASSES, 0.99)) == \
        {"prediction": ROWS}
