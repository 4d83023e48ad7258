"""The size report before training (data/checks/object_sizes.py): `validate-data` prints the
object count per class and the box sizes after resizing to `image_shape` against the network's
smallest anchor, and warns when boxes are below what an anchor matches, with the way out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from planting import annotation, jpeg, write_json_pair
from ssd_sagemaker.cli import main
from ssd_sagemaker.data.checks.object_sizes import NetworkInput, log_objects, object_lines
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.model.backbones import BACKBONES


def _job(base: Path, image_shape: str, objects_per_image) -> None:
    """A 4000x3000 'photo' channel (its JPEG small: only the annotation's size counts) with
    `objects_per_image` (class_id, left, top, width, height) in photo pixels."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "inputdataconfig.json").write_text(json.dumps({
        "train": {"ContentType": "image/jpeg"}, "train_annotation": {"ContentType": "image/jpeg"}}))
    (config / "hyperparameters.json").write_text(json.dumps({
        "num_classes": "2", "num_training_samples": str(len(objects_per_image)),
        "image_shape": image_shape, "base_network": "vgg-16"}))
    for index, objects in enumerate(objects_per_image):
        write_json_pair(base / "input/data/train", base / "input/data/train_annotation",
                        f"photo{index}", jpeg(400, 300),
                        annotation(f"photo{index}.jpg", 4000, 3000, objects=objects))


def test_validate_data_warns_of_boxes_below_the_smallest_anchor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    # 25x25 px objects in a 4000x3000 photo: 1.9x2.5 px at 300; and one 1000 px object
    small = [(0, 100 * i, 100, 25, 25) for i in range(3)]
    _job(tmp_path, "300", [small, [(1, 1000, 1000, 1000, 1000)] + small[:2]])
    assert main(["validate-data"]) == 0
    report = capsys.readouterr().out
    assert "  objects per class: 0 5, 1 1 (the most common 5x the least)" in report
    assert ("  objects sizes after resizing to 300 px (sqrt(w*h), px): <8 83%, 8-16 0%, "
            "16-32 0%, 32-64 0%, 64-128 17%, >=128 0%; median 2 px; the smallest anchor of "
            "vgg-16 at 300 is 21 px") in report
    assert ("  warning 83% of boxes are smaller than 15 px after resizing to 300 (no anchor of "
            "21 px overlaps them by IoU 0.5, so the network hardly learns them): train at 512 "
            "or tile") in report
    assert report.splitlines()[-1] == "Result: all channels valid"  # a warning, not an error


def test_no_warning_when_the_boxes_are_large_enough(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    _job(tmp_path, "512", [[(0, 0, 0, 400, 300)]])  # 51 x 51 px at 512
    assert main(["validate-data"]) == 0
    report = capsys.readouterr().out
    assert "median 51 px; the smallest anchor of vgg-16 at 512 is 51 px" in report
    assert "boxes are smaller than" not in report


def test_the_anchor_floor_is_the_network_s_and_training_logs_the_same_lines(caplog):
    assert BACKBONES["vgg-16"].smallest_anchor(300) == 21
    assert BACKBONES["resnet-50"].smallest_anchor(300) == pytest.approx(30)  # 512 preset, scaled
    network = NetworkInput("resnet-50", 512, BACKBONES["resnet-50"].smallest_anchor(512))
    samples = [Sample("a", b"", np.array([[0.1, 0.1, 0.12, 0.12]], np.float32),
                      np.array([1], np.int32))]
    lines, warnings = object_lines(samples, {1: "dog"}, network)
    assert lines[0] == "per class: dog 1"
    assert warnings and warnings[0].startswith("100% of boxes are smaller than 36 px after "
                                               "resizing to 512")
    assert "train at 512" not in warnings[0]  # already there: tiling is the way out
    with caplog.at_level(logging.INFO):
        log_objects(samples, {1: "dog"}, network, "train")
    assert [(r.levelname, r.getMessage()) for r in caplog.records][-1] == \
        ("WARNING", f"train: {warnings[0]}")
    assert ("INFO", "train objects: per class: dog 1") in \
        [(r.levelname, r.getMessage()) for r in caplog.records]


def test_training_logs_the_train_channel_s_objects_at_start(tmp_path, caplog):
    from ssd_sagemaker.data.channels import read_training_data
    from ssd_sagemaker.environment import ChannelConfig, Paths
    from ssd_sagemaker.hyperparameters import parse_hyperparameters

    _job(tmp_path, "300", [[(0, 100, 100, 25, 25), (1, 0, 0, 2000, 2000)]])
    caplog.set_level("INFO")
    channels = {name: ChannelConfig(name, "image/jpeg") for name in ("train", "train_annotation")}
    hp = parse_hyperparameters({"num_classes": "2", "num_training_samples": "1"})
    read_training_data(Paths(tmp_path), channels, hp)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", "train objects: per class: 0 1, 1 1") in messages
    assert any(level == "WARNING" and text.startswith("train: 50% of boxes are smaller than "
                                                      "15 px after resizing to 300")
               for level, text in messages), messages
