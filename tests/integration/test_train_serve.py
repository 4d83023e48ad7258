"""End to end on CPU: demo-data → train (subprocess) → artifact + metric lines → serve (gunicorn
subprocess) → /ping and /invocations; bad hyperparameters → failure file naming each."""

import json
import re
import subprocess
import sys

import pytest
import requests

from cli_runner import cli_env, run_cli, write_demo_job, write_hyperparameters
from ssd_sagemaker.metrics import METRIC_DEFINITIONS
from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy
from ssd_sagemaker.training.precision import cpu_has_bfloat16

pytestmark = pytest.mark.slow

TINY_RUN = {"num_classes": "3", "num_training_samples": "4", "epochs": "2",
            "mini_batch_size": "2", "use_pretrained_model": "0", "image_shape": "300",
            "learning_rate": "0.001", "_tuning_objective_metric": "validation:mAP",
            "sagemaker_region": "\"us-east-1\""}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    write_demo_job(base, TINY_RUN, 4, 2)
    result = run_cli(base, "train")
    return base, result


def test_train_writes_artifact_and_success(trained):
    base, result = trained
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = base / "model"
    for name in ("model_algo_1-symbol.json", "model_algo_1-0000.params", "hyperparams.json",
                 "model_info.json"):
        assert (model / name).is_file(), name
    info = json.loads((model / "model_info.json").read_text())
    assert info["classes"] == ["circle", "square", "triangle"]
    assert info["image_shape"] == 300 and info["base_network"] == "vgg-16"
    assert json.loads((model / "hyperparams.json").read_text())["num_classes"] == 3
    assert (base / "output" / "success").exists()
    assert not (base / "output" / "failure").exists()


def test_training_runs_mixed_precision_where_it_pays_and_exports_float32(trained):
    base, result = trained
    mixed = "mixed precision: convolutions in bfloat16 while training"
    assert (mixed in result.stdout) == cpu_has_bfloat16(), result.stdout[-3000:]
    graph = json.loads((base / "model" / "model_algo_1-symbol.json").read_text())
    assert [n for n in graph["nodes"] if n["op"].startswith("amp_")] == []
    assert "bfloat16" not in json.dumps(graph)


def test_train_prints_every_documented_metric(trained):
    _, result = trained
    for definition in METRIC_DEFINITIONS:
        values = re.findall(definition["Regex"], result.stdout)
        assert values, f"no line for {definition['Name']}"
        assert all(float(v) >= 0 for v in values)
    maps = re.findall(METRIC_DEFINITIONS[0]["Regex"], result.stdout)
    assert len(maps) == 2  # one validation mAP per epoch
    assert re.findall(r"completed (\S+) %", result.stdout)[-1] == "100"


def test_serve_answers_ping_and_invocations(trained):
    base, result = trained
    assert result.returncode == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ssd_sagemaker", "serve"],
                              env=cli_env(base, SAGEMAKER_BIND_TO_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, 120, server)
        except NotHealthy as error:
            server.kill()
            raise AssertionError(f"{error}:\n{server.communicate(timeout=30)[0]}") from None
        image = (base / "input/data/validation/validation_0000.jpg").read_bytes()
        response = requests.post(f"{url}/invocations", data=image,
                                 headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert response.status_code == 200
        prediction = response.json()["prediction"]
        assert prediction and all(len(row) == 6 for row in prediction)
        assert all(row[0] in (0.0, 1.0, 2.0) and 0 <= row[1] <= 1 for row in prediction)
        assert all(0 <= c <= 1 for row in prediction for c in row[2:])
        bad = requests.post(f"{url}/invocations", data=b"x", headers={"Content-Type": "text/csv"})
        assert bad.status_code == 415
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_bad_hyperparameters_fail_with_every_culprit_named(tmp_path):
    write_hyperparameters(tmp_path, {"num_training_samples": "10", "learning_rte": "0.1",
                                     "epochs": "0", "mini_batch_size": "many"})
    result = run_cli(tmp_path, "train", timeout=120)
    assert result.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("ClientError: ")
    for culprit in ("num_classes", "learning_rte", "learning_rate", "epochs", "'0'",
                    "mini_batch_size", "'many'"):
        assert culprit in failure, culprit
    assert "Traceback" not in failure and "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "output" / "success").exists()


def test_float16_without_a_gpu_is_a_client_error(tmp_path):
    write_hyperparameters(tmp_path, dict(TINY_RUN, precision="float16"))
    result = run_cli(tmp_path, "train", timeout=120)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("ClientError: precision=float16 needs a GPU")
    assert "Traceback" not in result.stdout + result.stderr


def test_pretrained_without_cached_weights_is_a_client_error(tmp_path):
    write_demo_job(tmp_path, dict(TINY_RUN, use_pretrained_model="1"), 2, 1)
    result = run_cli(tmp_path, "train", timeout=120)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert "vgg16_atrous-4fa2e1ad.params" in failure
    assert str(tmp_path / "mxnet_home" / "models") in failure
    assert "use_pretrained_model=0" in failure
    assert not (tmp_path / "model" / "model_algo_1-0000.params").exists()
