"""The demo stays honest cheaply (its 10-minute run is not a CI test): `demo-data` writes a
held-out validation channel with no image of the training set, hyperparameters that parse into
the measured demo settings, and says whether it starts from ImageNet weights; the demo's
summary prints the held-out mAP of the exported epoch."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from cli_runner import run_cli
from ssd_sagemaker.data.synthetic import PLAIN_GROUND
from ssd_sagemaker.demo import DEMO_HYPERPARAMETERS
from ssd_sagemaker.hyperparameters import parse_hyperparameters
from ssd_sagemaker.model.backbones import BACKBONES

ROOT = Path(__file__).resolve().parents[2]


def _digests(folder: Path) -> set[str]:
    return {hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.glob("*.jpg")}


def test_demo_data_writes_a_held_out_channel_and_a_job_that_parses(tmp_path):
    result = run_cli(tmp_path, "demo-data", "--train-images", "6", "--validation-images", "3",
                     timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = tmp_path / "input" / "data"
    train, held_out = _digests(data / "train"), _digests(data / "validation")
    assert len(train) == 6 and len(held_out) == 3 and not train & held_out
    assert len(list((data / "validation_annotation").glob("*.json"))) == 3
    config = tmp_path / "input" / "config"
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {
        "train", "validation", "train_annotation", "validation_annotation"}
    hp = parse_hyperparameters(json.loads((config / "hyperparameters.json").read_text()))
    assert (hp.base_network, hp.augmentation, hp.optimizer) == ("resnet-50", "none", "adam")
    assert hp.num_training_samples == 6 and hp.use_pretrained_model is False
    assert hp.epochs == int(DEMO_HYPERPARAMETERS["epochs"])
    first = cv2.imread(str(data / "train" / "train_0000.jpg")).astype(int)
    grey = (np.abs(first - PLAIN_GROUND).max(axis=2) <= 12).mean()
    assert grey >= 0.4, grey  # the plain style: shapes on a grey ground
    cache_file = tmp_path / "mxnet_home" / "models" / BACKBONES["resnet-50"].weights_file
    assert f"{cache_file} is not there, so training starts from scratch" in result.stdout


def test_demo_data_starts_from_imagenet_weights_when_they_are_cached(tmp_path):
    cache_file = tmp_path / "mxnet_home" / "models" / BACKBONES["resnet-50"].weights_file
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(b"weights")
    result = run_cli(tmp_path, "demo-data", "--train-images", "2", "--validation-images", "1",
                     timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    hyperparameters = json.loads(
        (tmp_path / "input" / "config" / "hyperparameters.json").read_text())
    assert parse_hyperparameters(hyperparameters).use_pretrained_model is True
    assert f"ImageNet weights of resnet-50 are in {cache_file}" in result.stdout


def test_demo_summary_prints_the_exported_epochs_held_out_map(tmp_path):
    rows = [{"epoch": 0, "validation_map": 0.12}, {"epoch": 1, "validation_map": 0.61},
            {"epoch": 2, "validation_map": 0.58}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_summary.py"),
                             str(metrics)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "held-out mAP 0.6100 (epoch 1 of 3" in result.stdout


def test_demo_script_runs_every_step():
    script = (ROOT / "scripts" / "demo.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "demo.sh")], check=True, timeout=30)
    for step in ("ssd-sagemaker demo-data", "ssd-sagemaker train", "ssd-sagemaker serve",
                 "scripts/invoke.py", "scripts/demo_summary.py", "ssd-sagemaker predict"):
        assert step in script, step
