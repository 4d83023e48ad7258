"""pipeline.py: `/invocations`, `predict` and the benchmark answer an image through one path, so
their bytes agree in every response format, and the pixel limit applies on every path (the
former `Predictor.predict_bytes` ignored it, and `predict` ignored `SSD_MAX_IMAGE_PIXELS`)."""

import json

import pytest

import image_corpus
from ssd_sagemaker.cli import main
from ssd_sagemaker.serving.app import create_app
from ssd_sagemaker.serving.attributes import CUSTOM_ATTRIBUTES_HEADER
from ssd_sagemaker.serving.config import DetectionLimits, ServingConfig
from ssd_sagemaker.serving.local_predict import predict_files
from ssd_sagemaker.serving.negotiation import ResponseFormat
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.request_errors import PayloadTooLarge
from tiny_model import export_tiny_model

IMAGE = image_corpus.jpeg(200, 100, seed=7)  # 20 000 pixels
LIMITS = DetectionLimits(score_threshold=0.1, max_detections=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("tiny"))


def predict_command(model_dir, folder) -> int:
    """`ssd-sagemaker predict` (in this process) on IMAGE as folder/photo.jpg, into folder/out."""
    (folder / "photo.jpg").write_bytes(IMAGE)
    return main(["predict", "--model-dir", str(model_dir), "--output", str(folder / "out"),
                 str(folder / "photo.jpg")])


def test_the_endpoint_answers_the_pipelines_bytes_in_every_format(model_dir):
    predictor = Predictor(model_dir)
    found = detect_in_bytes(predictor, IMAGE, 1_000_000, LIMITS)
    assert 0 < len(found.rows) <= 3 and all(row[1] >= 0.1 for row in found.rows)
    client = create_app(predictor, ServingConfig(max_image_pixels=1_000_000)).test_client()
    attributes = "score_threshold=0.1,max_detections=3"
    for response_format in ResponseFormat:
        answer = client.post("/invocations", data=IMAGE, content_type="image/jpeg",
                             headers={"Accept": response_format.value,
                                      CUSTOM_ATTRIBUTES_HEADER: attributes})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_data() == found.render(response_format), response_format
    assert json.loads(found.render()) == {"prediction": found.rows}


def test_predict_writes_the_pipelines_bytes(model_dir, tmp_path):
    predictor = Predictor(model_dir)
    (tmp_path / "photo.jpg").write_bytes(IMAGE)
    predict_files(predictor, [tmp_path / "photo.jpg"], tmp_path / "out", 1_000_000, LIMITS)
    found = detect_in_bytes(predictor, IMAGE, 1_000_000, LIMITS)
    assert (tmp_path / "out" / "photo.json").read_bytes() == found.render(ResponseFormat.JSON)
    assert (tmp_path / "out" / "photo.annotated.jpg").read_bytes() == \
        found.render(ResponseFormat.JPEG)


def test_the_pixel_limit_refuses_a_larger_image_on_every_path(model_dir, tmp_path, monkeypatch,
                                                              caplog):
    predictor = Predictor(model_dir)
    with pytest.raises(PayloadTooLarge, match="200 x 100 = 20000 pixels, over the limit of 19999"):
        detect_in_bytes(predictor, IMAGE, 19_999, DetectionLimits())
    client = create_app(predictor, ServingConfig(max_image_pixels=19_999)).test_client()
    refused = client.post("/invocations", data=IMAGE, content_type="image/jpeg")
    assert refused.status_code == 413 and "19999" in refused.get_json()["error"]

    monkeypatch.setenv("SSD_MAX_IMAGE_PIXELS", "19999")
    assert predict_command(model_dir, tmp_path) == 1
    assert "over the limit of 19999" in caplog.text and "SSD_MAX_IMAGE_PIXELS" in caplog.text
    assert not (tmp_path / "out" / "photo.json").exists()
    monkeypatch.setenv("SSD_MAX_IMAGE_PIXELS", "20000")
    assert predict_command(model_dir, tmp_path) == 0
    assert (tmp_path / "out" / "photo.json").is_file()


def test_predict_names_a_bad_pixel_limit(model_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SSD_MAX_IMAGE_PIXELS", "lots")
    monkeypatch.setenv("SSD_MAX_DETECTIONS", "0")
    assert predict_command(model_dir, tmp_path) == 1
    assert "SSD_MAX_IMAGE_PIXELS='lots'" in caplog.text and "SSD_MAX_DETECTIONS='0'" in caplog.text
