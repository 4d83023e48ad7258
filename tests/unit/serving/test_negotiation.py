"""negotiation.py: Accept → response format (default JSON unless asked otherwise, 406 when
nothing acceptable), custom attributes → detection limits (400 naming a bad one)."""

import pytest

from ssd_sagemaker.serving.attributes import detection_limits
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.negotiation import ResponseFormat, response_format
from ssd_sagemaker.serving.request_errors import InvalidAttribute, NotAcceptable

F = ResponseFormat


@pytest.mark.parametrize("accept,expected", [
    (None, F.JSON), ("", F.JSON), ("*/*", F.JSON), ("application/json", F.JSON),
    ("application/*", F.JSON), ("application/json; charset=utf-8", F.JSON),
    ("application/json;verbose", F.VERBOSE_JSON),
    ("application/json; verbose=true", F.VERBOSE_JSON),
    ("application/json;verbose=0", F.JSON),
    ("application/json;annotation=1", F.ANNOTATION_JSON),
    ("application/json;annotation=0", F.JSON),
    ("image/jpeg", F.JPEG), ("image/*", F.JPEG), ("image/png", F.PNG), ("IMAGE/PNG", F.PNG),
    # preference order: quality first, then the order given
    ("text/csv, image/png", F.PNG),
    ("image/png;q=0.5, application/json;verbose", F.VERBOSE_JSON),
    ("image/png, image/jpeg", F.PNG),
    ("image/png;q=0, */*;q=0.1", F.JSON),
    # a batch client's type: one image's answer is one JSON line (serving-api.md#batches)
    ("application/jsonlines", F.JSON), ("application/jsonlines;verbose", F.VERBOSE_JSON),
])
def test_accept_selects_the_response_format(accept, expected):
    assert response_format(accept) is expected


@pytest.mark.parametrize("accept", ["text/csv", "application/x-jsonlines", "image/png;q=0",
                                    "application/x-protobuf, text/html"])
def test_unsupported_accept_is_406_listing_the_supported_types(accept):
    with pytest.raises(NotAcceptable) as error:
        response_format(accept)
    assert error.value.status == 406
    assert accept in str(error.value)
    for supported in ("application/json", "application/json;verbose",
                      "application/json;annotation=1", "image/jpeg", "image/png"):
        assert supported in str(error.value)


DEFAULTS = DetectionLimits(score_threshold=0.2, max_detections=40)


@pytest.mark.parametrize("attributes,expected", [
    (None, DEFAULTS),
    ("", DEFAULTS),
    ("score_threshold=0.3,max_detections=50", DetectionLimits(0.3, 50)),
    (" max_detections = 5 ; trace-id=abc ", DetectionLimits(0.2, 5)),
    ("score_threshold=1", DetectionLimits(1.0, 40)),
    ("tenant=7,flag,score_threshold=0", DetectionLimits(0.0, 40)),
    ("SCORE_THRESHOLD=0.5", DetectionLimits(0.5, 40)),
])
def test_custom_attributes_override_the_defaults(attributes, expected):
    assert detection_limits(attributes, DEFAULTS) == expected


@pytest.mark.parametrize("attributes,culprit", [
    ("score_threshold=abc", "score_threshold='abc'"),
    ("score_threshold=1.5", "score_threshold='1.5'"),
    ("score_threshold=-0.1", "score_threshold='-0.1'"),
    ("score_threshold=nan", "score_threshold='nan'"),
    ("max_detections=0", "max_detections='0'"),
    ("max_detections=2.5", "max_detections='2.5'"),
    ("score_threshold=0.3,max_detections=", "max_detections=''"),
])
def test_a_bad_attribute_is_a_400_naming_it(attributes, culprit):
    with pytest.raises(InvalidAttribute) as error:
        detection_limits(attributes, DEFAULTS)
    assert error.value.status == 400
    assert culprit in str(error.value)
    assert "X-Amzn-SageMaker-Custom-Attributes" in str(error.value)
