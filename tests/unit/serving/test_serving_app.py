"""app.py with a stub predictor: every route and status code, JSON error bodies, limits from the
environment and the request, and a JSON 500 (logged) for our own failures."""

import logging

import cv2
import numpy as np
import pytest

from progressive_jpeg import progressive_jpeg
from serving_samples import StubPredictor, encode, noise
from ssd_sagemaker.serving.app import create_app
from ssd_sagemaker.serving.config import DetectionLimits, ServingConfig

JPEG = encode(noise(320, 240))
PNG = encode(noise(80, 60), ".png")
SORTED = sorted(StubPredictor.rows, key=lambda row: -row[1])


@pytest.fixture
def client(stub):
    return create_app(stub, ServingConfig(workers=3, max_payload_mb=1,
                                          max_image_pixels=1_000_000)).test_client()


def _post(client, body=JPEG, content_type="image/jpeg", **headers):
    return client.post("/invocations", data=body, content_type=content_type, headers=headers)


def _refused(response, status, *fragments):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])


def test_ping_and_execution_parameters(client):
    ping = client.get("/ping")
    assert ping.status_code == 200 and ping.data == b""
    assert client.get("/execution-parameters").get_json() == {
        "MaxConcurrentTransforms": 3, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1}


@pytest.mark.parametrize("content_type,body", [
    ("image/jpeg", JPEG), ("image/png", PNG), ("application/x-image", JPEG),
    ("application/x-image", PNG), ("image/png", JPEG), ("image/jpeg; charset=binary", JPEG)])
def test_images_are_accepted_by_their_bytes(client, content_type, body):
    response = _post(client, body, content_type)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"prediction": SORTED}


def test_verbose_annotation_and_image_responses(client):
    verbose = _post(client, Accept="application/json;verbose").get_json()
    assert verbose["class_names"] == ["circle", "square", "square"]
    assert verbose["image_size"] == {"width": 320, "height": 240}
    annotation = _post(client, Accept="application/json;annotation=1").get_json()
    assert annotation["image_size"] == [{"width": 320, "height": 240, "depth": 3}]
    assert annotation["annotations"][0] == {"class_id": 0, "score": 0.9, "left": 32.0,
                                            "top": 48.0, "width": 64.0, "height": 96.0}
    for accept, mimetype in (("image/jpeg", "image/jpeg"), ("image/png", "image/png")):
        drawn = _post(client, Accept=accept)
        assert drawn.status_code == 200 and drawn.mimetype == mimetype
        image = cv2.imdecode(np.frombuffer(drawn.data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)


def test_custom_attributes_limit_the_detections(client):
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0.3,max_detections=1"}
    assert _post(client, **headers).get_json() == {"prediction": SORTED[:1]}
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0.3"}
    assert _post(client, **headers).get_json() == {"prediction": SORTED[:2]}


def test_environment_defaults_apply_and_requests_override_them(stub):
    client = create_app(stub, ServingConfig(limits=DetectionLimits(0.5, 100))).test_client()
    assert _post(client).get_json() == {"prediction": SORTED[:2]}
    relaxed = {"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0"}
    assert _post(client, **relaxed).get_json() == {"prediction": SORTED}


def test_client_mistakes_are_json_errors(client, stub):
    _refused(_post(client, b"a,b\n1,2", "text/csv"), 415, "text/csv", "image/jpeg", "image/png",
             "application/x-image")
    _refused(client.post("/invocations", data=JPEG), 415, "no Content-Type")
    _refused(_post(client, b"GIF89a" + b"\x00" * 20), 415, "GIF")
    _refused(_post(client, Accept="text/csv"), 406, "text/csv", "application/json;verbose")
    _refused(_post(client, **{"X-Amzn-SageMaker-Custom-Attributes": "max_detections=lots"}), 400,
             "max_detections='lots'")
    _refused(_post(client, b"not an image"), 400, "decoded")
    _refused(_post(client, b""), 400, "empty")
    _refused(_post(client, JPEG[:len(JPEG) // 2]), 400, "truncated")
    _refused(_post(client, encode(np.zeros((1000, 1200, 3), np.uint8))), 413, "1200 x 1000",
             "SSD_MAX_IMAGE_PIXELS")
    _refused(_post(client, b"\xff\xd8\xff" + bytes(2 * 1024 * 1024)), 413,
             "above the limit of 1 MB", "SAGEMAKER_MAX_PAYLOAD_IN_MB")
    _refused(client.get("/invocations"), 405)
    _refused(client.get("/predict"), 404)
    assert stub.calls == 0  # none of these reached the network


def test_a_jpeg_of_more_scans_than_the_limit_is_a_400_before_decoding(client, stub):
    """2,090 scans of 2000 x 2000 (57 kB) held the decoder 3.6 s; refused from the walk."""
    _refused(_post(client, progressive_jpeg(1000, 1000, 2090)), 400,
             "the body is a progressive JPEG of 2090 scans, over the limit of 100", "re-encode")
    assert stub.calls == 0


def test_an_unexpected_failure_is_a_logged_json_500(stub, caplog):
    def broken(image):
        raise RuntimeError("the GPU fell off")

    stub.detect = broken
    client = create_app(stub).test_client()
    with caplog.at_level(logging.ERROR, logger="ssd_sagemaker.serving.app"):
        response = _post(client)
    _refused(response, 500, "RuntimeError", "server log")
    assert "the GPU fell off" not in response.get_json()["error"]
    assert any("the GPU fell off" in (r.exc_text or "") for r in caplog.records)
