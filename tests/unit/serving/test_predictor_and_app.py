"""artifact.py + serving: an exported (untrained) SSD is served with the built-in's JSON and
clear errors; an incomplete artifact is refused naming the missing file."""

import cv2
import numpy as np
import pytest

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    MODEL_INFO_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelInfo,
    read_model_info,
)
from ssd_sagemaker.serving.app import create_app
from ssd_sagemaker.serving.config import DEFAULT_MAX_IMAGE_PIXELS, DetectionLimits
from ssd_sagemaker.serving.pipeline import decode_image, detect_in_bytes, select_detections
from ssd_sagemaker.serving.predictor import Predictor


def _jpeg(width=320, height=240):
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_artifact_files_and_info(model_dir):
    for name in (SYMBOL_FILE, PARAMS_FILE, "hyperparams.json", MODEL_INFO_FILE):
        assert (model_dir / name).is_file(), name
    assert read_model_info(model_dir) == ModelInfo(("circle", "square"), 300, "vgg-16", 0.45)


def test_incomplete_artifact_names_the_missing_file(model_dir, tmp_path):
    (tmp_path / MODEL_INFO_FILE).write_text((model_dir / MODEL_INFO_FILE).read_text())
    with pytest.raises(ClientError) as error:
        Predictor(tmp_path)
    assert SYMBOL_FILE in str(error.value) and PARAMS_FILE in str(error.value)


def test_predictions_have_the_builtin_shape(model_dir):
    prediction = detect_in_bytes(Predictor(model_dir), _jpeg(), DEFAULT_MAX_IMAGE_PIXELS,
                                 DetectionLimits()).rows
    assert 0 < len(prediction) <= 100
    for class_id, score, *box in prediction:
        assert class_id in (0.0, 1.0)
        assert 0.0 <= score <= 1.0
        assert all(0.0 <= c <= 1.0 for c in box)
        assert box[0] <= box[2] and box[1] <= box[3]


def test_routes(model_dir):
    client = create_app(Predictor(model_dir)).test_client()
    assert client.get("/ping").status_code == 200
    ok = client.post("/invocations", data=_jpeg(), content_type="image/jpeg")
    assert ok.status_code == 200 and isinstance(ok.get_json()["prediction"], list)
    png = cv2.imencode(".png", np.zeros((50, 60, 3), np.uint8))[1].tobytes()
    assert client.post("/invocations", data=png, content_type="image/png").status_code == 200
    unsupported = client.post("/invocations", data=b"{}", content_type="application/json")
    assert unsupported.status_code == 415
    assert "image/jpeg" in unsupported.get_json()["error"]
    broken = client.post("/invocations", data=b"not an image", content_type="image/jpeg")
    assert broken.status_code == 400 and "decoded" in broken.get_json()["error"]
    empty = client.post("/invocations", data=b"", content_type="image/png")
    assert empty.status_code == 400 and "empty" in empty.get_json()["error"]


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_default_limits_leave_the_builtin_output_unchanged(model_dir):
    """select_detections with the defaults (threshold 0, 100 detections) is the identity on what
    the network returns (sorted by score, at most 100 after NMS), so existing clients see the
    same JSON; tighter limits keep a prefix of it."""
    predictor = Predictor(model_dir)
    raw = predictor.detect(decode_image(_jpeg()))
    assert select_detections(raw, DetectionLimits()) == raw
    assert [row[1] for row in raw] == sorted((row[1] for row in raw), reverse=True)
    for limits, expected in ((DetectionLimits(), raw),
                             (DetectionLimits(max_detections=3), raw[:3])):
        assert detect_in_bytes(predictor, _jpeg(), DEFAULT_MAX_IMAGE_PIXELS, limits).rows == \
            expected


def test_detect_batch_gives_each_image_its_own_detections(model_dir):
    """One forward of three images: each image's rows are those `detect` gives it alone."""
    import numpy as np

    from serving_samples import noise
    from ssd_sagemaker.serving.predictor import Predictor

    predictor = Predictor(model_dir)
    images = [noise(200, 150, seed=1), noise(320, 240, seed=2), noise(90, 300, seed=3)]
    together = predictor.detect_batch(images)
    assert len(together) == 3
    for image, rows in zip(images, together):
        alone = predictor.detect(image)
        assert len(rows) == len(alone) > 0
        np.testing.assert_allclose(np.array(rows), np.array(alone), atol=1e-5)
    assert not np.allclose(np.array(together[0][:5]), np.array(together[1][:5]))
