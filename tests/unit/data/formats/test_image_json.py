"""Reading an image + JSON annotation channel pair: samples with normalised boxes, and a report
naming every invalid file, skipped image, clipped box and bad image."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from deadline import deadline
from planting import bomb_png, corrupt_jpeg, truncated
from reading import read_images
from ssd_sagemaker.data.checks.report import MAX_ERROR_FRACTION
from ssd_sagemaker.data.formats import image_json
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


_DOG_CAT = [{"class_id": 0, "name": "dog"}, {"class_id": 1, "name": "cat"}]


def _annotation(annotation_dir: Path, name: str, **overrides: Any) -> Path:
    """A valid annotation of `<name>.jpg` (the image is not created), with fields overridden."""
    document = {"file": f"{name}.jpg",
                "image_size": [{"width": 64, "height": 48, "depth": 3}],
                "annotations": [{"class_id": 1, "left": 5, "top": 6, "width": 20, "height": 10},
                                {"class_id": 0, "left": 30, "top": 2, "width": 12, "height": 40}],
                "categories": _DOG_CAT}
    document.update(overrides)
    path = annotation_dir / f"{name}.json"
    path.write_text(json.dumps({k: v for k, v in document.items() if v is not ...}))
    return path


def _error(image_dir: Path, annotation_dir: Path, num_classes: int = 3) -> str:
    """The ClientError training raises for the channel."""
    with pytest.raises(ClientError) as caught:
        read_images(image_dir, annotation_dir, num_classes).report.check()
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
    channel = read_images(image_dir, annotation_dir, num_classes=3)
    assert [s.image for s in channel.samples] == [image_dir / "a.jpg", image_dir / "b.jpg",
                                                  image_dir / "sub/c.png"]
    assert [s.origin for s in channel.samples] == ["train/a.jpg", "train/b.jpg", "train/sub/c.png"]
    first = channel.samples[0]
    assert first.boxes.dtype == np.float32 and first.class_ids.dtype == np.int32
    # Boxes are fractions of image_size (64 x 48), back to pixels with label().
    np.testing.assert_allclose(first.boxes, [[5 / 64, 6 / 48, 25 / 64, 16 / 48],
                                             [30 / 64, 2 / 48, 42 / 64, 42 / 48]], rtol=1e-6)
    np.testing.assert_allclose(first.label(64, 48), [[5, 6, 25, 16, 1, 0], [30, 2, 42, 42, 0, 0]],
                               rtol=1e-5)
    assert first.class_ids.tolist() == [1, 0]
    np.testing.assert_allclose(channel.samples[2].label(64, 48)[:, :4], [[1.5, 2, 4.5, 6.5]],
                               rtol=1e-5)
    assert channel.class_names == {0: "dog", 1: "cat"}
    report = channel.report
    assert (report.found, report.used, report.skipped, report.error_count) == (3, 3, 0, 0)
    assert report.summary() == "train (image + JSON): 3 found, 3 used, 0 skipped, 0 with errors"


def test_image_without_objects_is_allowed(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "empty.jpg")
    _annotation(annotation_dir, "empty", annotations=[], categories=...)
    channel = read_images(image_dir, annotation_dir, num_classes=3)
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
    ("zero_image_width", ["image_size width must be a positive integer of at most 65535, got 0"]),
    ("huge_image_width", ["image_size height must be a positive integer of at most 65535, got "
                          "100000"]),
    ("long_file_name", ["\"file\" 'xxxxxxxxx", "is not a usable file name (File name too long)"]),
    ("400_digit_number", ["holds the integer 99999999999999999999... (400 digits), too large"]),
    ("5000_digit_number", ["holds an integer of more than 4300 digits, too large"]),
    ("deep_nesting", ["is nested more than 32 levels deep"]),
    ("latin_1", ["is not UTF-8 text: byte 0xe9"]),
    ("lone_surrogate", ["holds the string 'bad\\udead.jpg' with a lone surrogate escape"]),
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
        "huge_image_width": {"image_size": [{"width": 64, "height": 100_000, "depth": 3}]},
        "long_file_name": {"file": "x" * 5000 + ".jpg"},
        "lone_surrogate": {"file": "bad\udead.jpg"},
    }.get(fault, {}))
    text = path.read_text()
    path.write_text({"invalid_json": '{"file": "bad.jpg",',
                     "400_digit_number": text.replace('"left": 5', '"left": ' + "9" * 400),
                     "5000_digit_number": text.replace('"left": 5', '"left": ' + "9" * 5000),
                     "deep_nesting": '{"file": "bad.jpg", "x": ' + "[" * 100_000 + "1"
                                     + "]" * 100_000 + "}",
                     }.get(fault, text))
    if fault == "latin_1":
        path.write_bytes(path.read_text().replace("cat", "café").encode("latin-1"))
    message = _error(image_dir, annotation_dir)
    first_line, *problems, summary = message.splitlines()
    # bad.jpg counts as an image without annotation when the file does not reference it.
    assert re.fullmatch(r"The train channel has 1 invalid example\(s\) of [12] \(at most 1% "
                        r"are tolerated\); fix or remove them:", first_line), first_line
    assert len(problems) == 1 and problems[0].strip().startswith("train_annotation/bad.json: ")
    for text in expected:
        assert text in problems[0], message
    assert re.fullmatch(r"train \(image \+ JSON\): [12] found, 0 used, [01] skipped, 1 with "
                        r"errors", summary), summary


def test_hostile_file_among_a_hundred_is_left_out_under_the_one_percent_rule(
        dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    image_dir, annotation_dir = dirs
    for index in range(100):
        _image(image_dir, f"img_{index:03d}.jpg")
        _annotation(annotation_dir, f"img_{index:03d}")
    (annotation_dir / "hostile.json").write_text('{"file": "img_000.jpg", "n": ' + "9" * 400 + "}")
    channel = read_images(image_dir, annotation_dir, num_classes=3)
    channel.report.check()  # 1 invalid of 101: tolerated
    assert len(channel.samples) == 100 and channel.report.error_lines() == [
        "train_annotation/hostile.json: holds the integer 99999999999999999999... (400 digits), "
        "too large for any quantity here (at most about 1.8e308)"]
    assert "1 invalid example(s) left out" in caplog.text


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
    assert message.splitlines()[0].startswith("The train channel has 3 invalid example(s) of 4")
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
    assert lines[0].startswith("The train channel has 25 invalid example(s) of 25")
    assert len(lines) == 23 and lines[-2].strip().startswith("... and 5 more")


@pytest.mark.parametrize("make_dir", [True, False])
def test_channel_without_annotation_files_is_refused(tmp_path: Path, make_dir: bool) -> None:
    annotation_dir = tmp_path / "validation_annotation"
    if make_dir:
        annotation_dir.mkdir()
        (annotation_dir / "notes.txt").write_text("not an annotation")
    with pytest.raises(ClientError) as caught:
        read_images(tmp_path / "validation", annotation_dir, 3)
    message = str(caught.value)
    assert str(annotation_dir) in message and "no JSON annotation files" in message
    assert "one <image basename>.json per image" in message and '"image_size"' in message


def test_conflicting_category_names_are_refused(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    for name in ("a", "b"):
        _image(image_dir, f"{name}.jpg")
    _annotation(annotation_dir, "a")
    _annotation(annotation_dir, "b", categories=[{"class_id": 1, "name": "kitten"}])
    message = _error(image_dir, annotation_dir)
    assert ("b.json: category name 'kitten' for class_id 1 conflicts with 'cat' in "
            "train_annotation/a.json") in message, message


def test_a_repeated_category_list_is_checked_once_and_judged_alike_in_every_file(
        dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    image_dir, annotation_dir = dirs
    checked: list[Any] = []
    check = image_json._check_categories
    monkeypatch.setattr(image_json, "_check_categories",
                        lambda value: checked.append(value) or check(value))
    monkeypatch.setattr(image_json, "_CHECKED_LISTS", {})
    kitten = [{"class_id": 1, "name": "kitten"}, {"class_id": 5, "name": 5}]
    for name in ("a", "b", "c", "d"):
        _image(image_dir, f"{name}.jpg")
        _annotation(annotation_dir, name, **({"categories": kitten} if name in "bd" else {}))
    channel = read_images(image_dir, annotation_dir, 3)
    assert checked == [_DOG_CAT, kitten]  # four files, two distinct lists
    assert channel.report.errors == {
        f"train_annotation/{name}.json": [
            "category 1 must be {\"class_id\": <integer>, \"name\": <string>}, got "
            "{\"class_id\": 5, \"name\": 5}",
            "category name 'kitten' for class_id 1 conflicts with 'cat' in "
            "train_annotation/a.json; use one name per class"] for name in ("b", "d")}
    assert channel.class_names == {0: "dog", 1: "cat"}


def test_image_without_annotation_is_skipped_with_a_warning(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "a.jpg")
    _annotation(annotation_dir, "a")
    _image(image_dir, "sub/lonely.png")
    channel = read_images(image_dir, annotation_dir, 3)
    channel.report.check()  # a skipped image is not an error
    assert [s.origin for s in channel.samples] == ["train/a.jpg"]
    assert channel.report.warnings == [
        "train/sub/lonely.png: has no annotation file (expected e.g. "
        "train_annotation/sub/lonely.json); left out"]
    assert channel.report.summary() == \
        "train (image + JSON): 2 found, 1 used, 1 skipped, 0 with errors"


def test_boxes_overshooting_by_a_pixel_are_clipped_further_is_an_error(
        dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    for name in ("edge", "outside"):
        _image(image_dir, f"{name}.jpg")
    _annotation(annotation_dir, "edge",
                annotations=[{"class_id": 0, "left": -0.5, "top": 40, "width": 20, "height": 9}])
    _annotation(annotation_dir, "outside",
                annotations=[{"class_id": 0, "left": 50, "top": 10, "width": 30, "height": 10}])
    channel = read_images(image_dir, annotation_dir, 3)
    (sample,) = channel.samples
    np.testing.assert_allclose(sample.label(64, 48)[0, :4], [0, 40, 19.5, 48], atol=1e-4)
    assert channel.report.warnings == [
        "train_annotation/edge.json: annotation 0 [-0.5, 40, 19.5, 49] overshoots the 64x48 "
        "image by 1 pixel(s); clipped"]
    assert channel.report.error_lines() == [
        "train_annotation/outside.json: annotation 0 [50, 10, 80, 20] lies 16 pixels outside "
        "the 64x48 image (more than 1); fix the box or the image size"]


@pytest.mark.parametrize("content, expected", [
    (truncated, "image bad.jpg is truncated: the JPEG data ends inside segment 0xC4"),
    (lambda data: bomb_png(), "over the limit of 100000000 (a decompression bomb?)"),
    (lambda data: b"GIF89a" + data, "image bad.jpg is a GIF file, not a JPEG or PNG; convert"),
    (lambda data: b"hello", "image bad.jpg could not be decoded: it is neither JPEG nor PNG "
                            "data (5 bytes starting with neither signature, ff d8 ff or 89 50 "
                            "4e 47)"),
    (lambda data: cv2.imencode(".bmp", np.zeros((48, 64, 3), np.uint8))[1].tobytes(),
     "image bad.jpg is a BMP file, not a JPEG or PNG; convert it to JPEG or PNG"),
])
def test_bad_images_are_named_without_decoding(dirs: tuple[Path, Path], content,
                                               expected: str) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "bad.jpg")
    path = image_dir / "bad.jpg"
    path.write_bytes(content(path.read_bytes()))
    _annotation(annotation_dir, "bad")
    channel = read_images(image_dir, annotation_dir, 3)
    assert channel.samples == []
    (line,) = channel.report.error_lines()
    assert line.startswith("train_annotation/bad.json: ") and expected in line, line


def test_corrupt_pixels_are_found_by_the_thorough_read(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    (image_dir / "bad.jpg").write_bytes(corrupt_jpeg())
    _annotation(annotation_dir, "bad")
    assert len(read_images(image_dir, annotation_dir, 3).samples) == 1  # header ok
    channel = read_images(image_dir, annotation_dir, 3, thorough=True)
    assert channel.report.error_lines() == [
        "train_annotation/bad.json: image bad.jpg is a corrupt JPEG: its image data cannot be "
        "decoded (libjpeg-turbo: Could not determine subsampling level of JPEG image)"]


def test_size_differing_from_image_size_warns_and_scales(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "big.jpg", width=128, height=96)  # annotated as 64 x 48
    _annotation(annotation_dir, "big")
    channel = read_images(image_dir, annotation_dir, 3)
    assert channel.report.warnings == [
        "train_annotation/big.json: image_size 64x48 differs from the image big.jpg (128x96); "
        "boxes are scaled to the image"]
    np.testing.assert_allclose(channel.samples[0].label(128, 96)[0, :4], [10, 12, 50, 32],
                               rtol=1e-5)


def test_two_annotations_of_one_image_are_refused(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "a.jpg")
    _annotation(annotation_dir, "a")
    _annotation(annotation_dir, "copy", file="a.jpg")
    channel = read_images(image_dir, annotation_dir, 3)
    assert channel.report.error_lines() == [
        "train_annotation/copy.json: \"file\" 'a.jpg' is already annotated by "
        "train_annotation/a.json; keep one annotation per image"]


def test_a_few_invalid_files_are_left_out_many_stop_training(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    good = int(1 / MAX_ERROR_FRACTION)  # one bad file in good + 1 is within the tolerance
    for index in range(good):
        _image(image_dir, f"g{index:03d}.jpg")
        _annotation(annotation_dir, f"g{index:03d}")
    _annotation(annotation_dir, "bad1", file="missing.jpg")
    channel = read_images(image_dir, annotation_dir, 3)
    channel.report.check()
    assert len(channel.samples) == good and channel.report.error_count == 1
    _annotation(annotation_dir, "bad2", file="missing.jpg")
    channel = read_images(image_dir, annotation_dir, 3)
    with pytest.raises(ClientError, match="has 2 invalid example"):
        channel.report.check()


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    """A file outside both channels that must never be read (it stands for /etc/passwd)."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "passwd").write_text("root:x:0:0:SECRET:/root:/bin/bash\n")
    (folder / "passwd.json").write_text('{"file": "a.jpg", "image_size": "root:x:0"}')
    return folder


def _link_case(case: str, image_dir: Path, annotation_dir: Path, secret: Path) -> str:
    """Make one link leaving a channel among valid examples; the name of the culprit."""
    if case == "annotation link":
        (annotation_dir / "evil.json").symlink_to(secret / "passwd.json")
        return "train_annotation/evil.json: is a symbolic link, or lies under one, that leads " \
               "outside the train_annotation channel"
    if case == "image link":
        (image_dir / "evil.jpg").symlink_to(secret / "passwd")
        _annotation(annotation_dir, "evil")
        return "train_annotation/evil.json: \"file\" 'evil.jpg' is a symbolic link, or lies " \
               "under one, that leads outside the image channel"
    (image_dir / "etc").symlink_to(secret)  # a folder link: "file" reaches through it
    _annotation(annotation_dir, "evil", file="etc/passwd")
    return "train_annotation/evil.json: \"file\" 'etc/passwd' is a symbolic link, or lies " \
           "under one, that leads outside the image channel"


@pytest.mark.parametrize("case", ["annotation link", "image link", "folder link"])
def test_links_leaving_a_channel_are_invalid_examples_never_read(
        dirs: tuple[Path, Path], secret: Path, case: str) -> None:
    """Issue "Trust boundaries" item 4: the targets were read and their first bytes quoted in
    the failure file (`root:x:0`)."""
    image_dir, annotation_dir = dirs
    for name in ("a", "b"):
        _image(image_dir, f"{name}.jpg")
        _annotation(annotation_dir, name)
    culprit = _link_case(case, image_dir, annotation_dir, secret)
    message = _error(image_dir, annotation_dir)
    assert f"  {culprit} ({image_dir if 'image' in culprit else annotation_dir}); copy the " \
           f"file into the channel instead of linking to it" in message.splitlines(), message
    assert "root:x" not in message and "SECRET" not in message
    assert re.fullmatch(r"train \(image \+ JSON\): [34] found, 2 used, [01] skipped, 1 with "
                        r"errors", message.splitlines()[-1]), message


def test_links_that_stay_inside_the_channels_keep_working(dirs: tuple[Path, Path]) -> None:
    image_dir, annotation_dir = dirs
    _image(image_dir, "photos/a.jpg")
    (image_dir / "a.jpg").symlink_to("photos/a.jpg")
    (image_dir / "album").symlink_to("photos")
    _annotation(annotation_dir, "a")
    _annotation(annotation_dir, "b", file="album/a.jpg")
    (annotation_dir / "kept").mkdir()  # an annotation reached through a link to a .data file
    (annotation_dir / "kept" / "c.data").write_text(
        (annotation_dir / "a.json").read_text().replace("a.jpg", "photos/a.jpg"))
    (annotation_dir / "c.json").symlink_to("kept/c.data")
    channel = read_images(image_dir, annotation_dir, 3)
    assert channel.report.errors == {}
    assert [sample.origin for sample in channel.samples] == [
        "train/a.jpg", "train/album/a.jpg", "train/photos/a.jpg"]


@pytest.mark.parametrize("where", ["annotation", "image"])
def test_a_fifo_among_the_files_is_an_invalid_example_not_a_hang(dirs: tuple[Path, Path],
                                                                 where: str) -> None:
    """Issue "Trust boundaries" item 5: training blocked in open() until MaxRuntimeInSeconds."""
    image_dir, annotation_dir = dirs
    for name in ("a", "b"):
        _image(image_dir, f"{name}.jpg")
        _annotation(annotation_dir, name)
    if where == "annotation":
        os.mkfifo(annotation_dir / "pipe.json")
        culprit = "train_annotation/pipe.json: is a FIFO (named pipe), not a regular file"
    else:
        os.mkfifo(image_dir / "pipe.jpg")
        _annotation(annotation_dir, "pipe")
        culprit = ("train_annotation/pipe.json: \"file\" 'pipe.jpg' is a FIFO (named pipe), "
                   "not a regular file")
    with deadline(20):
        message = _error(image_dir, annotation_dir)
    assert f"  {culprit}; put the file itself there" in message.splitlines(), message
