"""`validate-data` in a job of several hosts shows what each host reads of `train` (its shard:
count and which samples, and the samples per epoch), and checks a ShardedByS3Key shard as the
host will train on it (the annotations of other hosts' images skipped, not errors)."""

from __future__ import annotations

import json
from pathlib import Path

from planting import sharded_by_key_layout
from ssd_sagemaker.cli import main
from ssd_sagemaker.data.synthetic import write_annotated_channel


def _config(base: Path, channels: dict, hosts: int = 2) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "hyperparameters.json").write_text(json.dumps(
        {"num_classes": "3", "num_training_samples": "10", "mini_batch_size": "2"}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-2", "hosts": [f"algo-{i + 1}" for i in range(hosts)]}))


def test_sharded_by_key_host_sees_its_shard(tmp_path: Path, monkeypatch, capsys) -> None:
    (paths, _), (other, _) = sharded_by_key_layout(tmp_path, (5, 5))
    for base in (paths.base, other.base):
        _config(base, {"train": {"ContentType": "image/jpeg",
                                 "S3DistributionType": "ShardedByS3Key"},
                       "train_annotation": {"ContentType": "image/jpeg"}})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(other.base))
    assert main(["validate-data"]) == 0
    report = capsys.readouterr().out
    assert ("Channel train (image + JSON): 10 found, 5 used, 5 skipped (5 annotations of "
            "images on other hosts), 0 with errors") in report
    assert ("  hosts   this host's objects (ShardedByS3Key, one of 2 hosts): 5 samples: "
            "train/img_0005.jpg, train/img_0006.jpg, train/img_0007.jpg, ... "
            "train/img_0009.jpg") in report
    assert ("  hosts   every host trains on 6 samples per epoch (ceil(num_training_samples=10 "
            "/ 2 hosts) in whole batches of 2; a shard with fewer repeats some)") in report
    assert report.splitlines()[-1] == "Result: all channels valid"


def test_replicated_channel_shows_each_shard(tmp_path: Path, monkeypatch, capsys) -> None:
    write_annotated_channel(tmp_path / "input/data/train", tmp_path / "input/data/train_annotation",
                            5, seed=2)
    _config(tmp_path, {"train": {"ContentType": "image/jpeg"},
                       "train_annotation": {"ContentType": "image/jpeg"}})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert main(["validate-data"]) == 0
    report = capsys.readouterr().out
    assert "Channel train (image + JSON): 5 found, 5 used" in report  # the whole local copy
    assert ("  hosts   shard 0: 3 samples (indices 0, 2, ...): train/img_0000.jpg, "
            "train/img_0002.jpg, train/img_0004.jpg") in report
    assert ("  hosts   shard 1: 2 samples (indices 1, 3, ...): train/img_0001.jpg, "
            "train/img_0003.jpg") in report
    assert "  hosts   every host trains on 4 samples per epoch (ceil(5 / 2) in whole batches " \
           "of 2)" in report
