"""`convert`: COCO JSON and Pascal VOC XML become channels this algorithm reads back with the
same boxes and classes, as image + JSON annotation folders and as RecordIO with .idx."""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np

from planting import jpeg
from ssd_sagemaker.cli import main
from ssd_sagemaker.data.annotations import read_annotated_channel
from ssd_sagemaker.data.recordio import read_recordio_channel


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
    channel = read_annotated_channel(tmp_path / "out" / "train",
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
    (sample,), report = read_recordio_channel(rec.parent, 2, 350)
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
