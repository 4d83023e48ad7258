"""RecordIO: framing compatible with MXNet both ways (split records included), files written by
MXNet's own im2rec read correctly with or without their .idx, and every label fault named with
its record index (label_width: the width the record needs)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from planting import detection_label, image_records, jpeg, write_records
from reading import read_records
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.formats.protocol import ReadContext
from ssd_sagemaker.data.formats.recordio import (
    MAGIC,
    LabelTooWide,
    iter_records,
    pack,
    parse_records,
    read_payload,
    unpack,
    write_record,
)
from ssd_sagemaker.errors import ClientError

IM2REC = Path(mx.__file__).parent / "tools" / "im2rec.py"
MAGIC_BYTES = MAGIC.to_bytes(4, "little")
PAYLOADS = [b"", b"abc", b"abcd" * 3, MAGIC_BYTES, b"xxxx" + MAGIC_BYTES + b"yy" + MAGIC_BYTES,
            MAGIC_BYTES * 3 + b"tail", b"ab" + MAGIC_BYTES + b"cd"]  # the last: unaligned magic


def test_mxnet_reads_what_we_write(tmp_path: Path) -> None:
    path = tmp_path / "ours.rec"
    write_records(path, PAYLOADS)
    reader = mx.recordio.MXIndexedRecordIO(str(path.with_suffix(".idx")), str(path), "r")
    assert [reader.read_idx(key) for key in reader.keys] == PAYLOADS


def test_we_read_what_mxnet_writes(tmp_path: Path) -> None:
    path = tmp_path / "theirs.rec"
    writer = mx.recordio.MXIndexedRecordIO(str(path.with_suffix(".idx")), str(path), "w")
    for key, payload in enumerate(PAYLOADS):
        writer.write_idx(key, payload)
    writer.close()
    with open(path, "rb") as stream:
        records = list(iter_records(stream))
    assert [payload for _, payload in records] == PAYLOADS
    offsets = [int(line.split("\t")[1]) for line in path.with_suffix(".idx").read_text().split("\n")
               if line]
    assert [offset for offset, _ in records] == offsets


def test_pack_matches_mxnet() -> None:
    label = [2, 5, 1, 0.1, 0.2, 0.5, 0.6]
    ours = pack(label, b"image-bytes", 7)
    theirs = mx.recordio.pack(mx.recordio.IRHeader(0, label, 7, 0), b"image-bytes")
    assert ours == theirs
    values, image, record_id = unpack(theirs)
    np.testing.assert_allclose(values, label, rtol=1e-6)
    assert (image, record_id) == (b"image-bytes", 7)


def _im2rec(tmp_path: Path) -> tuple[Path, list[list[float]]]:
    """Images and a .lst file, packed by MXNet's im2rec tool as the docs tell users to."""
    root = tmp_path / "images"
    root.mkdir()
    cv2.imwrite(str(root / "a.jpg"), np.full((60, 80, 3), 100, np.uint8))
    cv2.imwrite(str(root / "b.png"), np.full((50, 40, 3), 200, np.uint8))
    cv2.imwrite(str(root / "c.jpg"), np.full((30, 30, 3), 50, np.uint8))
    labels = [[2, 5, 1, 0.1, 0.2, 0.5, 0.6],
              [2, 6, 0, 0.0, 0.0, 1.0, 1.0, 0, 2, 0.2, 0.2, 0.4, 0.4, 1],  # with difficult
              [4, 5, 30, 30, 2, 0.5, 0.5, 0.9, 0.8]]  # A=4: image size in the header
    lines = [f"{i}\t" + "\t".join(f"{v:g}" for v in label) + f"\t{name}\n"
             for i, (label, name) in enumerate(zip(labels, ["a.jpg", "b.png", "c.jpg"]))]
    lst = tmp_path / "train" / "train.lst"
    lst.parent.mkdir()
    lst.write_text("".join(lines))
    subprocess.run([sys.executable, str(IM2REC), "--pack-label", "--num-thread", "1", str(lst),
                    f"{root}/"], check=True, capture_output=True)
    lst.unlink()
    return lst.with_suffix(".rec"), labels


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
@pytest.mark.parametrize("keep_idx", [True, False])
def test_im2rec_files_read_correctly(tmp_path: Path, keep_idx: bool) -> None:
    rec, labels = _im2rec(tmp_path)
    assert rec.with_suffix(".idx").exists()
    if not keep_idx:
        rec.with_suffix(".idx").unlink()
    channel = read_records(rec.parent, num_classes=3, label_width=20, thorough=True)
    samples, report = channel.samples, channel.report
    assert report.summary() == "train (RecordIO): 3 found, 3 used, 0 skipped, 0 with errors"
    assert [s.origin for s in samples] == [f"train/train.rec record {i}" for i in range(3)]
    first, second, third = samples
    np.testing.assert_allclose(first.boxes, [[0.1, 0.2, 0.5, 0.6]], rtol=1e-6)
    assert first.class_ids.tolist() == [1]
    np.testing.assert_allclose(second.boxes, [[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]], rtol=1e-6)
    assert second.class_ids.tolist() == [0, 2] and second.difficult.tolist() == [False, True]
    np.testing.assert_allclose(third.boxes, [[0.5, 0.5, 0.9, 0.8]], rtol=1e-6)
    # Workers fetch the image through the offset: the right image, decodable.
    shapes = [cv2.imdecode(np.frombuffer(read_payload(s.image), np.uint8), 1).shape
              for s in samples]
    assert shapes == [(60, 80, 3), (50, 40, 3), (30, 30, 3)]
    np.testing.assert_allclose(second.label(40, 50)[1], [8, 10, 16, 20, 2, 1], rtol=1e-5)


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_label_wider_than_label_width_names_record_and_width(tmp_path: Path) -> None:
    rec, _ = _im2rec(tmp_path)
    with pytest.raises(LabelTooWide) as caught:
        read_records(rec.parent, num_classes=3, label_width=10)
    assert str(caught.value) == (
        "train/train.rec record 1 has a label of 14 numbers, more than label_width=10; set the "
        "hyperparameter label_width to at least 14.")
    assert isinstance(caught.value, ClientError)


def _record(label: list[float], image: bytes | None = None) -> bytes:
    return pack(label, jpeg(100, 50) if image is None else image)


@pytest.mark.parametrize("label, expected", [
    ([7], "has a label of 1 number(s), not a detection label"),
    ([1, 5, 0, 0.1, 0.1, 0.2, 0.2], "A=1, B=5; A (header width) must be an integer >= 2"),
    ([2, 4, 0, 0.1, 0.1, 0.2], "B (numbers per object) an integer >= 5"),
    ([2, 5, 0, 0.1, 0.1, 0.2], "has 4 numbers after its 2-number header, not a multiple of B=5"),
    ([2, 5, 3, 0.1, 0.1, 0.2, 0.2], "object 0 has class_id 3.0; class ids must be integers in "
                                    "[0, 3)"),
    ([2, 5, 0.5, 0.1, 0.1, 0.2, 0.2], "object 0 has class_id 0.5"),
    ([2, 5, 0, 0.3, 0.1, 0.2, 0.2], "object 0 [30, 5, 20, 10] has zero or negative width"),
    ([2, 5, 0, 0.1, 0.1, 1.5, 0.2], "object 0 [10, 5, 150, 10] lies 50 pixels outside the "
                                    "100x50 image"),
    ([2, 5, 0, 0.1, 0.1, float("nan"), 0.2], "has a NaN or infinite number"),
])
def test_label_faults_are_named_with_the_record(tmp_path: Path, label: list[float],
                                                expected: str) -> None:
    write_records(tmp_path / "train" / "data.rec", [_record([2, 5, 1, .1, .1, .5, .5]),
                                                    _record(label)], index=False)
    channel = read_records(tmp_path / "train", 3, 350)
    samples, report = channel.samples, channel.report
    assert len(samples) == 1
    (line,) = report.error_lines()
    assert line.startswith("train/data.rec record 1: ") and expected in line, line


def test_padding_objects_are_ignored_and_small_overshoot_clipped(tmp_path: Path) -> None:
    label = detection_label([(1, 0.1, 0.1, 1.005, 0.5), (-1, -1, -1, -1, -1)])
    write_records(tmp_path / "train" / "data.rec", [_record(label)])
    channel = read_records(tmp_path / "train", 3, 350)
    (sample,), report = channel.samples, channel.report
    np.testing.assert_allclose(sample.boxes, [[0.1, 0.1, 1.0, 0.5]], rtol=1e-6)
    assert report.warnings == ["train/data.rec record 0: object 0 [10, 5, 100.5, 25] overshoots "
                               "the 100x50 image by 0.5 pixel(s); clipped"]


def test_bad_images_and_broken_framing_are_named(tmp_path: Path) -> None:
    good = _record([2, 5, 1, .1, .1, .5, .5])
    path = write_records(tmp_path / "train" / "data.rec",
                         [good, _record([2, 5, 1, .1, .1, .5, .5], b"not an image"), good])
    path.write_bytes(path.read_bytes() + b"\x00" * 5)  # trailing garbage
    channel = read_records(tmp_path / "train", 3, 350)
    samples, report = channel.samples, channel.report
    assert len(samples) == 2 and report.found == 3 and report.lost_bytes == 5
    end = len(path.read_bytes()) - 5
    assert report.error_lines() == [
        "train/data.rec record 1: image could not be decoded: it is neither JPEG nor PNG data "
        "(12 bytes starting with neither signature, ff d8 ff or 89 50 4e 47)",
        f"train/data.rec byte {end}: the data ends inside a record header at byte {end} "
        "(truncated file or stream); the 5 bytes to the end of the data are lost"]


def test_text_where_records_should_be_is_explained() -> None:
    stream = io.BytesIO(b"0\t0\n1\t1234\n")
    report = ChannelReport("train_0", "RecordIO")
    records = iter_records(stream, report=report, source="train_0")
    assert list(parse_records(records, "train_0", ReadContext(report, 3, 350))) == []
    (line,) = report.error_lines()
    assert "no RecordIO magic number at byte 0 (the bytes look like text: an .idx or .lst " \
           "file sent with the records?)" in line
    assert report.lost_bytes == 11 and report.too_many_errors()


def test_stream_of_wrapped_rec_files_is_unwrapped() -> None:
    records = image_records(3)
    inner = io.BytesIO()
    for record in records:
        write_record(inner, record)
    outer = io.BytesIO()
    write_record(outer, inner.getvalue())  # RecordWrapperType=RecordIO around a whole .rec
    outer.seek(0)
    report = ChannelReport("train_0", "RecordIO")
    samples = list(parse_records(iter_records(outer, report=report), "train_0",
                                 ReadContext(report, 3, 350)))
    assert [s.class_ids.tolist() for s in samples] == [[0], [1], [2]]
    assert samples[0].image == unpack(records[0])[1]


def test_channel_without_rec_files_says_what_to_send(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.jpg").write_bytes(jpeg())
    with pytest.raises(ClientError) as caught:
        read_records(tmp_path / "train", 3, 350)
    assert "declared application/x-recordio but holds no .rec file (found: x.jpg)" in \
        str(caught.value)
