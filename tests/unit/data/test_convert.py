"""`convert`: COCO JSON and Pascal VOC XML become channels this algorithm reads back with the
same boxes and classes, as image + JSON annotation folders and as RecordIO with .idx."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from planting import jpeg
from reading import read_images, read_records
from ssd_sagemaker.cli import main


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "coco_images"
    (images / "sub").mkdir(parents=True)
    (images / "a.jpg").write_bytes(jpeg(100, 80))
    (images / "sub" / "b.jpg").write_bytes(jpeg(60, 40))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                   {"id": 2, "file_name": "sub/b.jpg", "width": 60, "height": 40},
                   {"id": 3, "file_name": "missing.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"image_id": 1, "category_id": 18, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"image_id": 1, "category_id": 3, "bbox": [90, 70, 20, 20], "iscrowd": 0},
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"image_id": 2, "category_id": 18, "bbox": [5, 5, 0, 10], "iscrowd": 0}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    return path, images


def test_coco_to_json_channels(tmp_path: Path) -> None:
    source, images = _coco(tmp_path)
    assert main(["convert", "coco", str(source), "--images", str(images), "--output",
                 str(tmp_path / "out")]) == 0
    channel = read_images(tmp_path / "out" / "train",
                                     tmp_path / "out" / "train_annotation", 2)
    assert not channel.report.errors and channel.class_names == {0: "car", 1: "dog"}
    first, second = channel.samples
    assert first.origin == "train/a.jpg" and second.origin == "train/sub/b.jpg"
    # Category ids 3 and 18 become 0 and 1; the box sticking out is clipped to the image.
    np.testing.assert_allclose(first.label(100, 80)[:, :5],
                               [[10, 20, 40, 60, 1], [90, 70, 100, 80, 0]], rtol=1e-6)
    assert second.boxes.shape == (0, 4)  # its only box was empty: an image without objects


def _voc(tmp_path: Path) -> tuple[Path, Path]:
    images, xml = tmp_path / "JPEGImages", tmp_path / "Annotations"
    images.mkdir()
    xml.mkdir()
    (images / "000001.jpg").write_bytes(jpeg(100, 50))
    (xml / "000001.xml").write_text(
        "<annotation><filename>000001.jpg</filename><size><width>100</width>"
        "<height>50</height><depth>3</depth></size>"
        "<object><name>person</name><difficult>1</difficult><bndbox><xmin>11</xmin>"
        "<ymin>6</ymin><xmax>30</xmax><ymax>25</ymax></bndbox></object>"
        "<object><name>bird</name><difficult>0</difficult><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>100</xmax><ymax>50</ymax></bndbox></object></annotation>")
    return xml, images


def test_voc_to_recordio(tmp_path: Path) -> None:
    xml, images = _voc(tmp_path)
    assert main(["convert", "voc", str(xml), "--images", str(images), "--output",
                 str(tmp_path / "out"), "--to", "recordio", "--channel", "validation"]) == 0
    rec = tmp_path / "out" / "validation" / "validation.rec"
    assert rec.with_suffix(".idx").read_text() == "0\t0\n"
    channel = read_records(rec.parent, 2, 350)
    (sample,), report = channel.samples, channel.report
    assert not report.errors
    # Alphabetical classes (bird=0, person=1); 1-based inclusive VOC pixels → corners.
    np.testing.assert_allclose(sample.label(100, 50),
                               [[10, 5, 30, 25, 1, 1], [0, 0, 100, 50, 0, 0]], atol=1e-4)
    # MXNet reads it too, with the im2rec label layout.
    reader = mx.recordio.MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "r")
    header, image = mx.recordio.unpack_img(reader.read_idx(0))
    assert image.shape == (50, 100, 3) and list(header.label[:2]) == [2, 6]


def test_voc_with_unknown_class_in_classes_list(tmp_path: Path) -> None:
    xml, images = _voc(tmp_path)
    assert main(["convert", "voc", str(xml), "--images", str(images), "--output",
                 str(tmp_path / "out"), "--classes", "person"]) == 1


def _voc_split(root: Path, objects: dict[str, list[str]]) -> tuple[Path, Path]:
    """A VOC folder pair: image name -> class names of its objects."""
    images, xml = root / "JPEGImages", root / "Annotations"
    images.mkdir(parents=True)
    xml.mkdir()
    for stem, names in objects.items():
        (images / f"{stem}.jpg").write_bytes(jpeg(100, 50))
        boxes = "".join(f"<object><name>{name}</name><bndbox><xmin>11</xmin><ymin>6</ymin>"
                        f"<xmax>30</xmax><ymax>25</ymax></bndbox></object>" for name in names)
        (xml / f"{stem}.xml").write_text(f"<annotation><filename>{stem}.jpg</filename>{boxes}"
                                         f"</annotation>")
    return xml, images


def _job(base: Path) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"ContentType": "image/jpeg"} for name in
         ("train", "train_annotation", "validation", "validation_annotation")}))
    (config / "hyperparameters.json").write_text(json.dumps(
        {"num_classes": "2", "num_training_samples": "2"}))


def test_separately_converted_channels_must_agree_on_class_ids(tmp_path: Path, monkeypatch,
                                                               capsys, caplog) -> None:
    """train has cat and dog, validation only dog: converted apart, dog is 1 in train and 0 in
    validation. validate-data and training refuse that naming both mappings; converting
    validation with train's ids (--classes-from) fixes it."""
    from ssd_sagemaker.data.channels import read_training_data
    from ssd_sagemaker.environment import Paths, read_channels
    from ssd_sagemaker.errors import ClientError
    from ssd_sagemaker.hyperparameters import parse_hyperparameters

    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "opt_ml"))
    data = tmp_path / "opt_ml" / "input" / "data"
    train_xml, train_images = _voc_split(tmp_path / "voc_train", {"a": ["cat", "dog"],
                                                                  "b": ["dog"]})
    val_xml, val_images = _voc_split(tmp_path / "voc_val", {"c": ["dog"]})
    assert main(["convert", "voc", str(train_xml), "--images", str(train_images),
                 "--output", str(data)]) == 0
    assert "class ids: alphabetical order of the classes present in these files; another " \
           "channel converted separately gets other ids" in caplog.text
    assert main(["convert", "voc", str(val_xml), "--images", str(val_images), "--output",
                 str(data), "--channel", "validation"]) == 0
    _job(tmp_path / "opt_ml")
    capsys.readouterr()

    assert main(["validate-data"]) == 1
    report = capsys.readouterr().out
    assert "Channel train+validation: class ids disagree" in report
    expected = ("The train and validation channels number the classes differently (0: 'cat' "
                "vs 'dog'; 'dog': 1 vs 0): train {0: 'cat', 1: 'dog'}, validation {0: 'dog'}")
    assert expected in report
    assert report.splitlines()[-1] == "Result: problems in train+validation"

    paths = Paths(tmp_path / "opt_ml")
    hp = parse_hyperparameters({"num_classes": "2", "num_training_samples": "2"})
    with pytest.raises(ClientError) as caught:
        read_training_data(paths, read_channels(paths), hp)
    assert expected in str(caught.value)

    shutil.rmtree(data / "validation")
    shutil.rmtree(data / "validation_annotation")
    assert main(["convert", "voc", str(val_xml), "--images", str(val_images), "--output",
                 str(data), "--channel", "validation", "--classes-from",
                 str(data / "train_annotation" / "a.json")]) == 0
    assert "class ids: in the order given (--classes or --classes-from)" in caplog.text
    channel = read_images(data / "validation", data / "validation_annotation", 2)
    assert channel.samples[0].class_ids.tolist() == [1]  # dog, as in train
    assert read_training_data(paths, read_channels(paths), hp).class_names == \
        {0: "cat", 1: "dog"}
    capsys.readouterr()
    assert main(["validate-data"]) == 0


def test_coco_with_a_fixed_class_list(tmp_path: Path) -> None:
    source, images = _coco(tmp_path)
    assert main(["convert", "coco", str(source), "--images", str(images), "--output",
                 str(tmp_path / "out"), "--classes", "dog,car,bus"]) == 0
    channel = read_images(tmp_path / "out" / "train",
                                     tmp_path / "out" / "train_annotation", 3)
    assert channel.class_names == {0: "dog", 1: "car", 2: "bus"}
    assert channel.samples[0].class_ids.tolist() == [0, 1]  # dog, car
    assert main(["convert", "coco", str(source), "--images", str(images), "--output",
                 str(tmp_path / "out2"), "--classes", "dog"]) == 1  # car is missing


def test_summary_counts_everything_left_out_or_changed(tmp_path: Path, caplog) -> None:
    """COCO: a box of an image_id not in `images`, a box 10 px past the image; VOC to JSON: a
    difficult box; to RecordIO: no class names in the records. Each is said in the summary."""
    caplog.set_level(logging.INFO)
    source, images = _coco(tmp_path)
    document = json.loads(source.read_text())
    document["annotations"].append({"image_id": 99, "category_id": 3, "bbox": [1, 1, 5, 5]})
    source.write_text(json.dumps(document))
    assert main(["convert", "coco", str(source), "--images", str(images), "--output",
                 str(tmp_path / "coco_json")]) == 0
    assert "left out: 1 crowd regions; 1 boxes of an image_id missing from images; 1 " \
           "unreadable or missing images; 1 empty boxes; changed: 1 boxes overshooting their " \
           "image, clipped to it; class ids" in caplog.text

    xml, voc_images = _voc(tmp_path)
    assert main(["convert", "voc", str(xml), "--images", str(voc_images), "--output",
                 str(tmp_path / "voc_json")]) == 0
    assert "changed: 1 difficult boxes written as ordinary boxes (the JSON annotation has no " \
           "difficult flag; --to recordio keeps it)" in caplog.text

    out = tmp_path / "coco_rec"
    assert main(["convert", "coco", str(source), "--images", str(images), "--output", str(out),
                 "--to", "recordio"]) == 0
    assert f"RecordIO carries no class names: a model trained on it names them class_0, " \
           f"class_1, ...; the names are in {out / 'train_classes.json'}" in caplog.text
    assert sorted(p.name for p in (out / "train").iterdir()) == ["train.idx", "train.rec"]
    # the names file gives a later conversion the same ids
    assert main(["convert", "coco", str(source), "--images", str(images), "--output",
                 str(tmp_path / "again"), "--classes-from", str(out / "train_classes.json")]) == 0
    assert read_images(tmp_path / "again" / "train",
                                  tmp_path / "again" / "train_annotation", 2).class_names == \
        {0: "car", 1: "dog"}
