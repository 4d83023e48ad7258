"""Reading an image + JSON annotation channel pair, and the errors for invalid files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ssd_sagemaker.data.annotations import read_annotated_channel
from ssd_sagemaker.errors import ClientError


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    image_dir, annotation_dir = tmp_path / "train", tmp_path / "train_annotation"
    image_dir.mkdir()
    annotation_dir.mkdir()
    return image_dir, annotation_dir


def _image(image_dir: Path, name: str, width: int = 64, height: int = 48) -> None:
    path = image_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 127, dtype=np.uint8))


def _annotation(annotation_dir: Path, name: str, **overrides: Any) -> Path:
    """A valid annotation of `<name>.jpg` (the image is not created), with fields overridden."""
    document = {"file": f"{name}.jpg",
                "image_size": [{"width": 64, "height": 48, "depth": 3}],
                "annotations": [{"class_id": 1, "left": 5, "top": 6, "width": 20, "height": 10},
                                {"class_id": 0, "left": 30, "top": 2, "width": 12, "height": 40}],
                "categories": [{"class_id": 0, "name": "dog"}, {"class_id": 1, "name": "cat"}]}
    document.update(overrides)
    path = annotation_dir / f"{name}.json"
    path.write_text(json.dumps({k: v for k, v in document.items() if v is not ...}))
    return path


def _error(image_dir: Path, annotation_dir: Path, num_classes: int = 3) -> str:
    with pytest.raises(ClientError) as caught:
        read_annotated_channel(image_dir, annotation_dir, num_classes)
    return str(caught.value)


def test_valid_channel_reads_boxes_as_corners_and_class_names(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    for name in ("b", "a"):
        _image(image_dir, f"{name}.jpg")
        _annotation(annotation_dir, name)
    _image(image_dir, "sub/c.png")
    (annotation_dir / "nested").mkdir()
    _annotation(annotation_dir / "nested", "c", file="sub/c.png",
                annotations=[{"class_id": 2, "left": 1.5, "top": 2, "width": 3, "height": 4.5}],
                categories=...)
    channel = read_annotated_channel(image_dir, annotation_dir, num_classes=3)
    assert [s.image_path for s in channel.samples] == [image_dir / "a.jpg", image_dir / "b.jpg",
                                                       image_dir / "sub/c.png"]
    first = channel.samples[0]
    assert (first.width, first.height) == (64, 48)
    assert first.boxes.dtype == np.float32 and first.class_ids.dtype == np.int32
    np.testing.assert_array_equal(first.boxes, [[5, 6, 25, 16], [30, 2, 42, 42]])
    assert first.class_ids.tolist() == [1, 0]
    np.testing.assert_array_equal(channel.samples[2].boxes, [[1.5, 2, 4.5, 6.5]])
    assert channel.class_names == {0: "dog", 1: "cat"}


def test_image_without_objects_is_allowed(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "empty.jpg")
    _annotation(annotation_dir, "empty", annotations=[], categories=...)
    channel = read_annotated_channel(image_dir, annotation_dir, num_classes=3)
    (sample,) = channel.samples
    assert sample.boxes.shape == (0, 4) and sample.boxes.dtype == np.float32
    assert sample.class_ids.shape == (0,) and sample.class_ids.dtype == np.int32
    assert channel.class_names == {}


BOX = {"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}


@pytest.mark.parametrize("fault, expected", [
    ("invalid_json", ["is not valid JSON", "line 1"]),
    ("missing_key", ["missing the key(s) image_size"]),
    ("missing_image", ["'gone.jpg' does not exist", "train"]),
    ("parent_escape", ["'../x.jpg' points outside the image channel"]),
    ("absolute_path", ["is an absolute path"]),
    ("class_id_3", ["annotation 1 has class_id 3", "[0, 3)"]),
    ("class_id_a", ["annotation 0 has class_id 'a'", "[0, 3)"]),
    ("zero_width_box", ["annotation 0 has width 0", "positive"]),
    ("zero_image_width", ["image_size width must be a positive integer, got 0"]),
])
def test_each_fault_is_named_with_its_file(dirs: tuple[Path, Path], tmp_path: Path, fault: str,
                                           expected: list[str]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "bad.jpg")
    (tmp_path / "x.jpg").write_bytes(b"outside")
    path = _annotation(annotation_dir, "bad", **{
        "invalid_json": {},
        "missing_key": {"image_size": ...},
        "missing_image": {"file": "gone.jpg"},
        "parent_escape": {"file": "../x.jpg"},
        "absolute_path": {"file": str(tmp_path / "x.jpg")},
        "class_id_3": {"annotations": [BOX, dict(BOX, class_id=3)]},
        "class_id_a": {"annotations": [dict(BOX, class_id="a")]},
        "zero_width_box": {"annotations": [dict(BOX, width=0)]},
        "zero_image_width": {"image_size": [{"width": 0, "height": 48, "depth": 3}]},
    }[fault])
    if fault == "invalid_json":
        path.write_text('{"file": "bad.jpg",')
    message = _error(image_dir, annotation_dir)
    first_line, *problems = message.splitlines()
    assert first_line == "The train_annotation channel has 1 invalid annotation file:"
    assert len(problems) == 1 and problems[0].strip().startswith("bad.json: ")
    for text in expected:
        assert text in problems[0], message


def test_all_faults_of_all_files_are_reported_together(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "good.jpg")
    _annotation(annotation_dir, "good")
    _annotation(annotation_dir, "no_image")
    (annotation_dir / "broken.json").write_text("not json")
    _image(image_dir, "classes.jpg")
    _annotation(annotation_dir, "classes",
                annotations=[dict(BOX, class_id=5), BOX, dict(BOX, class_id=-1, height=-2)])
    message = _error(image_dir, annotation_dir)
    assert message.splitlines()[0] == \
        "The train_annotation channel has 3 invalid annotation files:"
    for text in ("broken.json: is not valid JSON",
                 "classes.json: annotation 0 has class_id 5",
                 "classes.json: annotation 2 has class_id -1",
                 "classes.json: annotation 2 has height -2",
                 "no_image.json: \"file\" 'no_image.jpg' does not exist"):
        assert text in message, message
    assert "good.json" not in message


def test_long_listings_are_capped(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    for index in range(25):
        _annotation(annotation_dir, f"img_{index:02d}")
    lines = _error(image_dir, annotation_dir).splitlines()
    assert lines[0] == "The train_annotation channel has 25 invalid annotation files:"
    assert len(lines) == 22 and lines[-1].strip() == "... and 5 more"


@pytest.mark.parametrize("make_dir", [True, False])
def test_channel_without_annotation_files_is_refused(tmp_path: Path, make_dir: bool) -> None:
    annotation_dir = tmp_path / "validation_annotation"
    if make_dir:
        annotation_dir.mkdir()
        (annotation_dir / "notes.txt").write_text("not an annotation")
    message = _error(tmp_path / "validation", annotation_dir)
    assert str(annotation_dir) in message and "no JSON annotation files" in message
    assert "one <image basename>.json per image" in message and '"image_size"' in message


def test_conflicting_category_names_are_refused(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    for name in ("a", "b"):
        _image(image_dir, f"{name}.jpg")
    _annotation(annotation_dir, "a")
    _annotation(annotation_dir, "b", categories=[{"class_id": 1, "name": "kitten"}])
    message = _error(image_dir, annotation_dir)
    assert "b.json: category name 'kitten' for class_id 1 conflicts with 'cat' in a.json" \
        in message, message
