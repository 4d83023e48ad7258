"""local_predict.py: `predict` finds the images, writes for each the endpoint's JSON and an
annotated image, and reports unreadable images together without losing the others."""

import json

import cv2
import pytest

from progressive_jpeg import progressive_jpeg
from serving_samples import encode, noise
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.local_predict import collect_images, predict_files
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(encode(noise(64, 48)))
    (folder / "nested" / "b.PNG").write_bytes(encode(noise(30, 20, seed=1), ".png"))
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "c.jpeg"
    single.write_bytes(encode(noise(50, 40, seed=2)))
    return folder, single


def test_files_and_folders_are_collected(images):
    folder, single = images
    assert [p.name for p in collect_images([folder, single])] == ["a.jpg", "b.PNG", "c.jpeg"]


def test_inputs_that_cannot_work_are_refused(images, tmp_path):
    folder, single = images
    with pytest.raises(ClientError, match="neither an image file nor a folder"):
        collect_images([tmp_path / "missing.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClientError, match="No images found"):
        collect_images([tmp_path / "empty"])
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ClientError, match="named a"):
        collect_images([folder, tmp_path / "a.png"])


def test_outputs_are_the_endpoint_json_and_an_annotated_image(images, model_dir, tmp_path):
    folder, single = images
    predictor = Predictor(model_dir)
    out = tmp_path / "out"
    written = predict_files(predictor, collect_images([folder, single]), out, 1_000_000,
                            DetectionLimits(max_detections=5))
    assert sorted(p.name for p in written) == [
        "a.annotated.jpg", "a.json", "b.annotated.jpg", "b.json", "c.annotated.jpg", "c.json"]
    expected = detect_in_bytes(predictor, single.read_bytes(), 1_000_000,
                               DetectionLimits(max_detections=5))
    assert json.loads((out / "c.json").read_text()) == {"prediction": expected.rows}
    annotated = cv2.imread(str(out / "b.annotated.jpg"))
    assert annotated.shape == (20, 30, 3)


def test_unreadable_images_are_reported_after_the_others_are_written(images, stub, tmp_path):
    folder, single = images
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(single.read_bytes()[:100])
    out = tmp_path / "out"
    with pytest.raises(ClientError) as error:
        predict_files(stub, [broken, single], out, 1_000_000, DetectionLimits())
    assert "1 of 2 images" in str(error.value) and "broken.jpg" in str(error.value)
    assert "truncated" in str(error.value)
    assert (out / "c.json").is_file() and not (out / "broken.json").exists()


def test_a_jpeg_of_too_many_scans_is_reported_by_name(images, stub, tmp_path):
    folder, single = images
    hostile = tmp_path / "hostile.jpg"
    hostile.write_bytes(progressive_jpeg(640, 480, 2090))
    with pytest.raises(ClientError, match=r"1 of 2 images(.|\n)*hostile.jpg(.|\n)*2090 scans, "
                                          r"over the limit of 100"):
        predict_files(stub, [hostile, single], tmp_path / "out", 1_000_000, DetectionLimits())
    assert stub.calls == 1
