"""The synthetic demo set: reproducible, as many images as asked, exact boxes, readable."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from reading import read_images
from ssd_sagemaker.data.synthetic import CLASS_NAMES, draw_shape, write_annotated_channel


def _write(root: Path, count: int = 6, seed: int = 7, prefix: str = "img") -> list[Path]:
    return write_annotated_channel(root / "train", root / "train_annotation", count, seed,
                                   prefix=prefix)


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    _write(tmp_path / "a")
    _write(tmp_path / "b")
    first, second = _files(tmp_path / "a/train_annotation"), _files(tmp_path / "b/train_annotation")
    assert first == second and len(first) == 6
    assert _files(tmp_path / "a/train") == _files(tmp_path / "b/train")


def test_different_seed_writes_different_data(tmp_path: Path) -> None:
    _write(tmp_path / "a", seed=1)
    _write(tmp_path / "b", seed=2)
    assert _files(tmp_path / "a/train_annotation") != _files(tmp_path / "b/train_annotation")
    assert _files(tmp_path / "a/train") != _files(tmp_path / "b/train")


def test_count_and_names_are_honoured(tmp_path: Path) -> None:
    paths = _write(tmp_path, count=4, prefix="validation")
    expected = [f"validation_{i:04d}" for i in range(4)]
    assert [path.name for path in paths] == [f"{name}.jpg" for name in expected]
    assert all(path.parent == tmp_path / "train" and path.is_file() for path in paths)
    assert sorted(p.name for p in (tmp_path / "train_annotation").iterdir()) == \
        [f"{name}.json" for name in expected]


def test_annotations_follow_the_contract_and_lie_inside_the_image(tmp_path: Path) -> None:
    _write(tmp_path, count=20)
    for path in sorted((tmp_path / "train_annotation").glob("*.json")):
        document = json.loads(path.read_text())
        assert document["file"] == path.with_suffix(".jpg").name
        size = document["image_size"][0]
        assert size["depth"] == 3 and 256 <= size["width"] <= 400 and 224 <= size["height"] <= 320
        image = cv2.imread(str(tmp_path / "train" / document["file"]))
        assert image.shape == (size["height"], size["width"], 3)
        assert document["categories"] == [{"class_id": i, "name": name}
                                          for i, name in enumerate(CLASS_NAMES)]
        assert 1 <= len(document["annotations"]) <= 3
        shorter = min(size["width"], size["height"])
        boxes = []
        for box in document["annotations"]:
            assert all(type(box[key]) is int for key in box)
            assert box["class_id"] in range(len(CLASS_NAMES))
            assert box["left"] >= 0 and box["top"] >= 0
            assert box["left"] + box["width"] <= size["width"]
            assert box["top"] + box["height"] <= size["height"]
            assert 0.15 * shorter - 2 <= box["width"] <= 0.45 * shorter + 1
            boxes.append((box["left"], box["top"], box["left"] + box["width"],
                          box["top"] + box["height"]))
        for i, a in enumerate(boxes):  # no shape may hide another completely
            for b in boxes[i + 1:]:
                inter = (max(min(a[2], b[2]) - max(a[0], b[0]), 0)
                         * max(min(a[3], b[3]) - max(a[1], b[1]), 0))
                smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
                assert inter / smaller < 0.4


@pytest.mark.parametrize("class_id", range(len(CLASS_NAMES)))
@pytest.mark.parametrize("left, top, size, apex", [(10, 20, 40, 0.5), (0, 0, 33, 0.0),
                                                   (57, 31, 81, 1.0), (5, 90, 64, 0.27)])
def test_draw_shape_returns_the_tight_box_of_the_drawn_pixels(
        class_id: int, left: int, top: int, size: int, apex: float) -> None:
    canvas = np.zeros((200, 180, 3), dtype=np.uint8)
    box = draw_shape(canvas, class_id, left, top, size, (200, 100, 50), apex=apex)
    drawn = cv2.boundingRect(canvas.any(axis=2).astype(np.uint8))
    assert np.abs(np.subtract(box, drawn)).max() <= 1, (box, drawn)
    assert left <= box[0] and top <= box[1]
    assert box[0] + box[2] <= left + size and box[1] + box[3] <= top + size


def test_written_channel_round_trips_through_the_reader(tmp_path: Path) -> None:
    _write(tmp_path, count=5)
    channel = read_images(tmp_path / "train", tmp_path / "train_annotation",
                                     num_classes=3)
    assert channel.class_names == dict(enumerate(CLASS_NAMES))
    assert len(channel.samples) == 5
    for sample in channel.samples:
        document = json.loads((tmp_path / "train_annotation" / sample.image.with_suffix(
            ".json").name).read_text())
        expected = [[b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]]
                    for b in document["annotations"]]
        size = document["image_size"][0]
        np.testing.assert_allclose(sample.label(size["width"], size["height"])[:, :4],
                                   np.array(expected, dtype=np.float32), rtol=1e-5)
        assert sample.class_ids.tolist() == [b["class_id"] for b in document["annotations"]]


def test_plain_style_draws_one_colour_per_class_on_grey(tmp_path: Path) -> None:
    """The demo's easy data: grey ground, the class's colour inside each box, 1-2 large shapes."""
    from ssd_sagemaker.data.synthetic import PLAIN_CLASS_COLOURS, PLAIN_GROUND

    write_annotated_channel(tmp_path / "img", tmp_path / "ann", 12, 3, plain=True)
    for path in sorted((tmp_path / "ann").glob("*.json")):
        document = json.loads(path.read_text())
        image = cv2.imread(str(tmp_path / "img" / document["file"])).astype(int)
        assert 1 <= len(document["annotations"]) <= 2
        ground = np.ones(image.shape[:2], dtype=bool)
        for item in document["annotations"]:  # 8 px margin: JPEG blocks ring at the edges
            ground[max(item["top"] - 8, 0):item["top"] + item["height"] + 8,
                   max(item["left"] - 8, 0):item["left"] + item["width"] + 8] = False
        assert np.abs(image[ground] - PLAIN_GROUND).max() <= 24
        shorter = min(image.shape[:2])
        for item in document["annotations"]:
            assert item["height"] >= 0.25 * shorter - 1
            centre_y = item["top"] + item["height"] * 3 // 4  # inside triangles too
            centre_x = item["left"] + item["width"] // 2
            pixel = image[centre_y, centre_x]
            assert np.abs(pixel - PLAIN_CLASS_COLOURS[item["class_id"]]).max() <= 30, pixel
