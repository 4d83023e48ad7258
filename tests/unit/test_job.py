"""The job is read at the edge: a missing tree or file is named with the first step to take,
nothing is created on the way, a tree that cannot be written is refused before training, and a
bad config is refused before MXNet is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_runner import cli_env, run_cli, write_hyperparameters
from ssd_sagemaker.environment import Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.job import read_training_job

VALID = {"num_classes": "3", "num_training_samples": "4"}


def test_a_missing_tree_is_named_with_the_first_step_and_not_created(tmp_path):
    with pytest.raises(ClientError) as refused:
        read_training_job(Paths(tmp_path / "opt_ml"))
    assert f"SAGEMAKER_BASE_DIR: {tmp_path / 'opt_ml'} does not exist" in str(refused.value)
    assert "ssd-sagemaker demo-data" in str(refused.value)
    assert not (tmp_path / "opt_ml").exists()


def test_a_missing_hyperparameters_file_is_named(tmp_path):
    (tmp_path / "input").mkdir()
    with pytest.raises(ClientError) as refused:
        read_training_job(Paths(tmp_path))
    assert str(refused.value).startswith(
        f"no hyperparameters file at {tmp_path / 'input/config/hyperparameters.json'}: point "
        f"SAGEMAKER_BASE_DIR at your /opt/ml tree")


def test_the_job_holds_typed_hyperparameters(tmp_path):
    write_hyperparameters(tmp_path, dict(VALID, epochs="7"))
    job = read_training_job(Paths(tmp_path))
    assert (job.hyperparameters.epochs, job.hyperparameters.num_classes) == (7, 3)
    assert job.resources.hosts == ("algo-1",) and job.channels == {}


def test_train_on_a_mistyped_base_dir_says_so_on_stderr_and_creates_nothing(tmp_path):
    result = run_cli(tmp_path / "opt_mll", "train", timeout=120, separate=True)
    assert result.returncode == 1
    assert f"ClientError: SAGEMAKER_BASE_DIR: {tmp_path / 'opt_mll'} does not exist" \
        in result.stderr
    assert "num_classes" not in result.stderr and "ERROR" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_bad_config_is_refused_before_mxnet_is_imported(tmp_path):
    write_hyperparameters(tmp_path, {"num_classes": "three", "num_training_samples": "4"})
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ssd_sagemaker", "train"],
                            env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "ssd_sagemaker.job" in imported  # the listing is real
    assert [name for name in imported if name.split(".")[0] in ("mxnet", "gluoncv")] == []
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("ClientError: ") and "num_classes" in failure


def test_a_tree_that_cannot_be_written_is_refused_before_training(tmp_path):
    tree = tmp_path / "ro"
    tree.mkdir()
    write_hyperparameters(tree, VALID)
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(tree), str(tree)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"no read-only bind mount here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(tree)], check=True, timeout=30)
        result = run_cli(tree, "train", timeout=120, separate=True)
    finally:
        subprocess.run(["umount", str(tree)], check=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ClientError: cannot write {tree / 'output'} (Read-only file system)" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_demo_data_into_a_tree_it_cannot_create_is_named_without_a_traceback(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli(blocker / "opt_ml", "demo-data", timeout=120, separate=True)
    assert result.returncode == 1
    assert f"ClientError: cannot write the demo job under {blocker / 'opt_ml'}" in result.stderr
    assert "set SAGEMAKER_BASE_DIR to a folder you can write" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_hyperparameters_written_by_the_demo_make_a_job(tmp_path):
    made = run_cli(tmp_path, "demo-data", "--train-images", "2", "--validation-images", "1",
                   timeout=120)
    assert made.returncode == 0, made.stderr
    job = read_training_job(Paths(tmp_path))
    assert set(job.channels) == {"train", "validation", "train_annotation",
                                 "validation_annotation"}
    assert json.loads(Paths(tmp_path).hyperparameters_file.read_text())["num_classes"] == "3"


def test_a_missing_model_folder_is_named_with_both_ways_to_give_it(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8")
    result = run_cli(tmp_path, "predict", str(image), "--model-dir", str(tmp_path / "modle"),
                     timeout=120, separate=True)
    assert result.returncode == 1
    assert f"The model folder {tmp_path / 'modle'} does not exist: give the folder `train` " \
           f"wrote with --model-dir" in result.stderr
    assert "SAGEMAKER_BASE_DIR" in result.stderr and "incomplete" not in result.stderr
