"""`quantize=int8` end to end: train (subprocess) writes the INT8 network beside the float32
one, calibrated on the validation channel; `predict` and `serve` run it with
SSD_INFERENCE_PRECISION=int8 and answer in the float32 format."""

import json

import pytest

from cli_runner import run_cli, write_demo_job
from serve_process import Server

pytestmark = pytest.mark.slow

RUN = {"num_classes": "3", "num_training_samples": "2", "epochs": "1", "mini_batch_size": "2",
       "use_pretrained_model": "0", "base_network": "resnet-50", "image_shape": "300",
       "quantize": "int8"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    write_demo_job(base, RUN, 2, 3)
    result = run_cli(base, "train", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base, result


def test_train_writes_the_int8_network_calibrated_on_the_validation_channel(trained):
    base, result = trained
    model = base / "model"
    for name in ("model_algo_1-symbol.json", "model_algo_1-0000.params",
                 "model_algo_1-int8-symbol.json", "model_algo_1-int8-0000.params"):
        assert (model / name).is_file(), name
    entry = json.loads((model / "model_info.json").read_text())["int8"]
    assert entry["calibration_images"] == 3  # the whole validation channel (under 32)
    assert entry["symbol_file"] == "model_algo_1-int8-symbol.json"
    assert isinstance(entry["float32_layers"], list)
    assert "INT8 network written (calibrated on 3 images" in result.stdout
    graph = json.loads((model / "model_algo_1-symbol.json").read_text())
    assert "quantize" not in json.dumps(graph)  # the float32 network is left as it was
    assert (base / "output" / "success").exists()


def test_predict_and_serve_answer_in_int8_as_in_float32(trained, tmp_path):
    base, _ = trained
    images = base / "input" / "data" / "validation"
    answers = {}
    for precision in ("float32", "int8"):
        result = run_cli(base, "predict", str(images), "--output", str(tmp_path / precision),
                         timeout=600, SSD_INFERENCE_PRECISION=precision)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        answers[precision] = sorted(p.name for p in (tmp_path / precision).iterdir())
        rows = json.loads((tmp_path / precision / "validation_0000.json").read_text())
        assert all(len(row) == 6 for row in rows["prediction"])
    assert answers["int8"] == answers["float32"] and len(answers["int8"]) == 6
    server = Server(base, SSD_INFERENCE_PRECISION="int8", SAGEMAKER_MODEL_SERVER_WORKERS="1")
    try:
        server.wait_ready()
        response = server.post((images / "validation_0001.jpg").read_bytes())
        assert response.status_code == 200
        prediction = response.json()["prediction"]
        assert all(len(row) == 6 and 0 <= row[1] <= 1 for row in prediction)
        assert "int8" in server.output()
    finally:
        assert server.stop() == 0
