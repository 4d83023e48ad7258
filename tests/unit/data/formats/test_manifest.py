"""Augmented manifests: attribute roles from AttributeNames, samples from the record stream
(File mode: records in the channel's files), class names from the metadata's class-map, and
records out of step named."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from planting import jpeg, manifest_records, write_records
from reading import read_manifest
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.formats.manifest import Attributes, parse_entries
from ssd_sagemaker.data.formats.protocol import ReadContext
from ssd_sagemaker.data.formats.recordio import iter_records, write_record
from ssd_sagemaker.data.loading.batch_work import image_bytes
from ssd_sagemaker.errors import ClientError

NAMES = ("source-ref", "bounding-box", "bounding-box-metadata")


def test_attribute_roles() -> None:
    attributes = Attributes.from_names("train", NAMES)
    assert (attributes.image, attributes.boxes, attributes.metadata) == (0, 1, 2)
    reordered = Attributes.from_names("train", ["bounding-box", "image-ref"])
    assert (reordered.image, reordered.boxes, reordered.metadata) == (1, 0, None)


@pytest.mark.parametrize("names", [["source-ref"], ["bounding-box", "class"],
                                   ["a-ref", "b-ref", "boxes"]])
def test_attribute_names_without_image_or_boxes_are_refused(names: list[str]) -> None:
    with pytest.raises(ClientError) as caught:
        Attributes.from_names("train", names)
    assert f"Channel 'train' has AttributeNames {names}" in str(caught.value)
    assert '["source-ref", "bounding-box"]' in str(caught.value)


def test_file_mode_channel_reads_samples_and_class_names(tmp_path: Path) -> None:
    write_records(tmp_path / "train" / "part-0", manifest_records(3), index=False)
    write_records(tmp_path / "train" / "part-1", manifest_records(1, seed=9), index=False)
    channel = read_manifest(tmp_path / "train", Attributes.from_names("train", NAMES), 3)
    samples, names, report = channel.samples, channel.class_names, channel.report
    assert report.summary() == "train (augmented manifest): 4 found, 4 used, 0 skipped, " \
                               "0 with errors"
    assert names == {0: "circle", 1: "square", 2: "triangle"}
    assert [s.origin for s in samples] == ["train/part-0 line 0", "train/part-0 line 1",
                                           "train/part-0 line 2", "train/part-1 line 0"]
    assert [s.class_ids.tolist() for s in samples] == [[0], [1], [2], [0]]
    np.testing.assert_allclose(samples[0].label(80, 60)[0, :4], [20, 15, 60, 45], rtol=1e-6)
    # File-mode samples point at their image record instead of holding the bytes.
    assert image_bytes(samples[3]) == manifest_records(1, seed=9)[0]


def _parse(records: list[bytes], names=NAMES[:2], num_classes: int = 3):
    stream = io.BytesIO()
    for record in records:
        write_record(stream, record)
    stream.seek(0)
    report = ChannelReport("train_0", "augmented manifest")
    found: dict[int, str] = {}
    samples = list(parse_entries(iter_records(stream), Attributes.from_names("train", names),
                                 "train_0", ReadContext(report, num_classes, 350), found))
    return samples, report, found


def test_records_out_of_step_are_explained() -> None:
    records = manifest_records(2, with_metadata=False)
    samples, report, _ = _parse(records[1:] + records[:1])  # shifted by one record
    assert samples == []
    first = report.error_lines()[0]
    assert first.startswith("train_0 line 0: source-ref could not be decoded: it is neither JPEG "
                                       "nor PNG data") and \
        "it looks like JSON: are the records out of step with AttributeNames " \
        "['source-ref', 'bounding-box']?" in first


def test_box_attribute_faults_are_named() -> None:
    box = {"image_size": [{"width": 80, "height": 60, "depth": 3}],
           "annotations": [{"class_id": 5, "left": 1, "top": 1, "width": 5, "height": 5}]}
    samples, report, _ = _parse([jpeg(80, 60), json.dumps(box).encode(), jpeg(80, 60), b"{oops"])
    assert samples == []
    lines = report.error_lines()
    assert lines[0] == ("train_0 line 0: bounding-box annotation 0 has class_id 5; class ids "
                        "must be integers in [0, 3) for num_classes=3")
    assert lines[1].startswith("train_0 line 1: bounding-box is not valid JSON")


def test_stream_ending_mid_line_is_an_error() -> None:
    records = manifest_records(2, with_metadata=False)
    samples, report, _ = _parse(records[:3])
    assert len(samples) == 1
    assert report.error_lines() == [
        "train_0 line 1: has 1 record(s), but AttributeNames ['source-ref', 'bounding-box'] "
        "needs 2 per manifest line"]


def test_images_without_objects_are_samples() -> None:
    box = {"image_size": [{"width": 80, "height": 60, "depth": 3}], "annotations": []}
    (sample,), report, _ = _parse([jpeg(80, 60), json.dumps(box).encode()])
    assert sample.boxes.shape == (0, 4) and not report.errors


BOX_OBJECT = {"image_size": [{"width": 80, "height": 60, "depth": 3}],
              "annotations": [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]}


@pytest.mark.parametrize("record, fragment", [
    (json.dumps(BOX_OBJECT).replace('"left": 1', '"left": ' + "9" * 400).encode(),
     "bounding-box holds the integer 99999999999999999999... (400 digits), too large"),
    (json.dumps(BOX_OBJECT).replace('"left": 1', '"left": ' + "9" * 5000).encode(),
     "bounding-box holds an integer of more than 4300 digits"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "is nested more than 32 levels deep"),
    (json.dumps(BOX_OBJECT).encode("utf-16"), "bounding-box is UTF-16 text"),
    (b'{"x": "\\udead"}', "holds the string '\\udead' with a lone surrogate escape"),
])
def test_hostile_bounding_box_records_are_errors_naming_the_line(record: bytes,
                                                                 fragment: str) -> None:
    samples, report, _ = _parse([jpeg(80, 60), record])
    assert samples == [] and len(report.error_lines()) == 1
    assert report.error_lines()[0].startswith("train_0 line 0: bounding-box ")
    assert fragment in report.error_lines()[0]


def test_class_map_keys_that_are_not_class_ids_are_ignored_with_a_warning() -> None:
    metadata = json.dumps({"class-map": {"0": "cat", "²": "dog", "9" * 5000: "bird",
                                         "-1": "fish", "1": ["x"]}}).encode()
    samples, report, found = _parse([jpeg(80, 60), json.dumps(BOX_OBJECT).encode(), metadata],
                                    names=NAMES)
    assert len(samples) == 1 and found == {0: "cat"}
    assert len(report.warnings) == 4
    assert "train_0 line 0: class-map entry '²': 'dog' is not" in report.warnings[0]
    assert all(len(warning) < 200 for warning in report.warnings)
