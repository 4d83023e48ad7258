"""Files from S3-backed folders are data, never code, and a run's markers are its own: the real
`train` CLI on a checkpoint whose optimizer state was replaced by a pickle that runs a shell
command (its SHA-256 updated in the description, as an attacker with write access to the
checkpoint prefix would) runs nothing, names the file it refused and resumes from the
checkpoint before it; the stale markers of earlier runs are gone; `serve` and `predict`
refuse a model whose files do not match its manifest."""

import hashlib
import json
import os
import pickle

import cv2
import numpy as np
import pytest

from cli_runner import FLOAT32, run_cli, write_demo_job, write_hyperparameters
from resume_checks import assert_resumed_from_the_first_checkpoint
from ssd_sagemaker.model.artifact import PARAMS_FILE
from ssd_sagemaker.serving.loopback import free_port
from ssd_sagemaker.training.checkpoint import STATE_FILE
from tiny_model import export_tiny_model

BASE = {"num_classes": "3", "num_training_samples": "2", "epochs": "2", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300", **FLOAT32}


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_a_states_file_that_runs_code_is_refused_and_training_resumes_from_the_previous(
        tmp_path):
    write_demo_job(tmp_path, BASE, 2, 1)
    first = run_cli(tmp_path, "train")
    assert first.returncode == 0, first.stdout[-3000:]
    checkpoints = tmp_path / "checkpoints"
    marker = tmp_path / "MARKER"
    crafted = pickle.dumps((_RunsCode(marker), None))
    (checkpoints / "checkpoint-0002.states").write_bytes(crafted)
    for name in ("checkpoint-0002.json", STATE_FILE):
        description = json.loads((checkpoints / name).read_text())
        description["files"]["checkpoint-0002.states"] = {
            "bytes": len(crafted), "sha256": hashlib.sha256(crafted).hexdigest()}
        (checkpoints / name).write_text(json.dumps(description))
    (tmp_path / "output/failure").write_text("ClientError: an earlier run's failure\n")

    write_hyperparameters(tmp_path, dict(BASE, epochs="3"))
    second = run_cli(tmp_path, "train")
    assert second.returncode == 0, second.stdout[-3000:]
    assert not marker.exists()
    assert (f"checkpoint checkpoint-0002 in {checkpoints} is damaged: checkpoint-0002.states was "
            f"refused as optimizer state: it names posix.system, which an optimizer state never "
            f"holds; only arrays, numbers, tuples, lists and dicts are read from it (nothing in "
            f"it was run)") in second.stdout
    assert_resumed_from_the_first_checkpoint(tmp_path, second.stdout)
    assert sorted(p.name for p in (tmp_path / "output").iterdir() if p.is_file()) == [
        "success"]  # the earlier run's failure file went when this run started


def test_a_failing_run_removes_the_success_file_of_an_earlier_run(tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    (output / "success").write_text("")
    write_hyperparameters(tmp_path, dict(BASE, epochs="zero"))
    done = run_cli(tmp_path, "train", timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in output.iterdir()) == ["failure"]
    assert (output / "failure").read_text().startswith("ClientError: ")
    assert "epochs" in (output / "failure").read_text()


def _tampered_tiny_model(base):
    """The tiny detector's artifact in `base/model` with one bit of its weights flipped after
    `train`-style export (the parameters file stays valid and loadable)."""
    model = export_tiny_model(base / "model")
    params = model / PARAMS_FILE
    data = bytearray(params.read_bytes())
    data[80] ^= 0x01
    params.write_bytes(bytes(data))
    return model


MISMATCH = (f"does not match its manifest.json: {PARAMS_FILE} differs from what was written "
            f"(its SHA-256 does not match)")


def test_serve_refuses_a_model_that_does_not_match_its_manifest_before_booting(tmp_path):
    _tampered_tiny_model(tmp_path)
    done = run_cli(tmp_path, "serve", timeout=120, SAGEMAKER_BIND_TO_PORT=str(free_port()))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert f"ClientError: The model artifact in {tmp_path / 'model'} {MISMATCH}" in done.stdout
    assert "Booting worker" not in output and "Traceback" not in output


def test_predict_refuses_a_model_that_does_not_match_its_manifest(tmp_path):
    model = _tampered_tiny_model(tmp_path)
    image = tmp_path / "image.jpg"
    assert cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    done = run_cli(tmp_path, "predict", "--model-dir", str(model), "--output",
                   str(tmp_path / "predictions"), str(image), timeout=120)
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    assert f"ClientError: The model artifact in {model} {MISMATCH}" in done.stdout
    assert not (tmp_path / "predictions").exists() or not any(
        (tmp_path / "predictions").iterdir())
