"""The training engine end to end on tiny demo data: SIGTERM and resume, learning-rate steps,
every optimizer and both backbones, pretrained + frozen layers, early stopping, incremental
training, and the per-epoch files in output/data."""

import json
import signal
import subprocess
import sys
import tarfile
import time

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

from cli_runner import FLOAT32, cli_env, run_cli, write_demo_job, write_hyperparameters
from ssd_sagemaker.environment import Paths
from ssd_sagemaker.job import read_training_job
from ssd_sagemaker.model.artifact import PARAMS_FILE
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.training.trainer import train

pytestmark = pytest.mark.slow

BASE = {"num_classes": "3", "num_training_samples": "4", "epochs": "1", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300", **FLOAT32}


def _demo(base, train=4, validation=2, **hyperparameters):
    write_demo_job(base, dict(BASE, **hyperparameters), train, validation)


def _train_in_process(base, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(base / "mxnet_home"))
    return train(read_training_job(Paths(base)))


def _epochs(base):
    lines = (base / "output/data/metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_sigterm_mid_epoch_then_resume_completes_the_plan(tmp_path):
    _demo(tmp_path, train=6, epochs="2", num_training_samples="6", lr_scheduler_step="1",
          lr_scheduler_factor="0.5")
    process = subprocess.Popen([sys.executable, "-m", "ssd_sagemaker", "train"],
                               env=cli_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = []
    deadline = time.time() + 600
    for line in process.stdout:  # wait until the second epoch is under way
        output.append(line)
        if "epoch 1 batch 1/3" in line:
            process.send_signal(signal.SIGTERM)
            signalled = time.time()
            break
        assert time.time() < deadline, "".join(output)
    output.extend(process.stdout)
    assert process.wait(timeout=120) == 143, "".join(output)
    assert time.time() - signalled < 60  # stopped at the next batch boundary, promptly
    text = "".join(output)
    assert "SIGTERM received" in text and "checkpoint was saved" in text
    state = json.loads((tmp_path / "checkpoints/checkpoint.json").read_text())
    assert (state["next_epoch"], state["interrupted_in_epoch"]) == (1, 1)
    assert not (tmp_path / "output/success").exists()
    assert not (tmp_path / "output/failure").exists()
    assert [row["epoch"] for row in _epochs(tmp_path)] == [0]

    resumed = run_cli(tmp_path, "train")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "resumed from checkpoint" in resumed.stdout and "starting at epoch 1" in resumed.stdout
    rows = _epochs(tmp_path)
    assert [row["epoch"] for row in rows] == [0, 1]  # the planned epochs, none lost or repeated
    assert rows[0]["learning_rate"] == pytest.approx(0.001)
    assert rows[1]["learning_rate"] == pytest.approx(0.0005)  # the step survived the restart
    assert (tmp_path / "output/success").exists()
    assert (tmp_path / "model" / PARAMS_FILE).exists()
    csv_lines = (tmp_path / "output/data/metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,cross_entropy,smooth_l1,validation_map")
    assert len(csv_lines) == 3
    assert (tmp_path / "output/data/training_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("optimizer, base_network", [
    ("adam", "resnet-50"),
    ("rmsprop", "vgg-16"),
    ("adadelta", "vgg-16"),
])
def test_each_optimizer_and_backbone_trains(tmp_path, monkeypatch, optimizer, base_network):
    _demo(tmp_path, optimizer=optimizer, base_network=base_network)
    summary = _train_in_process(tmp_path, monkeypatch)
    assert summary.epochs_run == 1 and summary.best_map is not None
    info = json.loads((tmp_path / "model/model_info.json").read_text())
    assert info["base_network"] == base_network
    row = _epochs(tmp_path)[0]
    assert np.isfinite(row["cross_entropy"]) and np.isfinite(row["smooth_l1"])


def test_pretrained_base_with_frozen_first_blocks(tmp_path, monkeypatch):
    source = vgg16_atrous_300(pretrained=False)
    source.initialize(mx.init.Normal(0.05))
    source(mx.nd.zeros((1, 3, 300, 300)))
    cache = tmp_path / "mxnet_home" / "models"
    cache.mkdir(parents=True)
    source.save_parameters(str(cache / BACKBONES["vgg-16"].weights_file))
    _demo(tmp_path, use_pretrained_model="1", freeze_layer_pattern="^(conv1_|conv2_).*",
          learning_rate="0.01")
    _train_in_process(tmp_path, monkeypatch)

    exported = {name.split("vggatrousextractor0_")[1]: value.asnumpy()
                for name, value in mx.nd.load(str(tmp_path / "model" / PARAMS_FILE)).items()
                if "vggatrousextractor0_conv" in name}
    pretrained = {name: value.data().asnumpy()
                  for name, value in source._collect_params_with_prefix().items()}
    # conv1_1 … conv2_2 are GluonCV's conv0 … conv3: unchanged; conv3_1 (conv4) trained.
    for index, (stage, layer) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_array_equal(exported[f"conv{index}_weight"],
                                      pretrained[f"stages.{stage}.{layer * 2}.weight"])
    assert not np.array_equal(exported["conv4_weight"], pretrained["stages.2.0.weight"])


def test_early_stopping_stops_and_says_why(tmp_path, caplog, monkeypatch):
    # With a vanishing learning rate the mAP cannot double, so epoch 1 is no improvement.
    _demo(tmp_path, epochs="4", early_stopping="True", early_stopping_min_epochs="1",
          early_stopping_patience="1", early_stopping_tolerance="1.0", learning_rate="0.000001")
    with caplog.at_level("INFO"):
        summary = _train_in_process(tmp_path, monkeypatch)
    assert summary.epochs_run == 2
    assert "early stopping after epoch 1" in caplog.text
    assert [row["epoch"] for row in _epochs(tmp_path)] == [0, 1]


def test_incremental_training_from_model_tarball(tmp_path, monkeypatch, caplog):
    first = tmp_path / "first"
    _demo(first)
    _train_in_process(first, monkeypatch)
    second = tmp_path / "second"
    _demo(second)
    channel = second / "input/data/model"
    channel.mkdir(parents=True)
    with tarfile.open(channel / "model.tar.gz", "w:gz") as archive:
        for path in (first / "model").iterdir():
            archive.add(path, arcname=path.name)
    config = json.loads((second / "input/config/inputdataconfig.json").read_text())
    config["model"] = {"ContentType": "application/x-sagemaker-model"}
    (second / "input/config/inputdataconfig.json").write_text(json.dumps(config))
    with caplog.at_level("INFO"):
        _train_in_process(second, monkeypatch)
    assert "warm start: loaded" in caplog.text

    write_hyperparameters(second, dict(BASE, num_classes="4", image_shape="384"))
    (second / "checkpoints").rename(second / "old_checkpoints")
    result = run_cli(second, "train", timeout=300)
    assert result.returncode == 1
    failure = (second / "output/failure").read_text()
    assert "num_classes: the model has 3, the job asks for 4" in failure
    assert "image_shape: the model has 300, the job asks for 384" in failure
