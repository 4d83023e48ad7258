"""Training's start reads a RecordIO file through its `.idx`: each record only as far as its
label and its image's size (the loader reads and checks the rest when it uses the image), with
the samples and counts a full scan gives; an `.idx` that does not tile its file exactly is not
trusted (the file is scanned, lost bytes counted)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from planting import detection_label, truncated
from reading import read_records
from ssd_sagemaker.data.checks.samples import RecordRef
from ssd_sagemaker.data.formats import recordio
from ssd_sagemaker.data.formats.recordio import MAGIC, pack, write_record
from ssd_sagemaker.data.loading.batch_work import BadSample, load

COUNT = 12
MAGIC_BYTES = MAGIC.to_bytes(4, "little")


def _noise_jpeg(seed: int, width: int = 240, height: int = 180) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _payloads() -> list[bytes]:
    """Records with large images; record 5's payload holds an aligned magic number after its
    image (trailing bytes a decoder ignores), so it is written split in parts."""
    payloads = []
    for index in range(COUNT):
        label = detection_label([(index % 3, 0.25, 0.25, 0.75, 0.75)])
        payload = pack(label, _noise_jpeg(index), index)
        if index == 5:
            payload += b"\0" * (-len(payload) % 4) + MAGIC_BYTES + b"tail"
        payloads.append(payload)
    return payloads


def _write(channel: Path, payloads: list[bytes], junk_after: int | None = None) -> Path:
    """train.rec and its .idx (listing where each record starts); `junk_after`: foreign bytes
    written after that record, which the .idx does not mention."""
    channel.mkdir(parents=True, exist_ok=True)
    rec = channel / "train.rec"
    lines = []
    with open(rec, "wb") as stream:
        for index, payload in enumerate(payloads):
            lines.append(f"{index}\t{stream.tell()}\n")
            write_record(stream, payload)
            if index == junk_after:
                stream.write(b"not a record" * 10)
    rec.with_suffix(".idx").write_text("".join(lines))
    return rec


def _summary(channel) -> list[tuple]:
    return [(s.origin, s.image, s.boxes.tolist(), s.class_ids.tolist()) for s in channel.samples]


def test_training_reads_each_record_only_as_far_as_its_image_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _write(tmp_path / "train", _payloads())
    assert rec.stat().st_size > COUNT * 20_000
    read: list[int] = []
    real = recordio.os.pread
    monkeypatch.setattr(recordio.os, "pread",
                        lambda fd, size, offset: read.append(size) or real(fd, size, offset))
    indexed = read_records(tmp_path / "train", 3, defer_images=True)
    monkeypatch.setattr(recordio.os, "pread", real)
    scanned = read_records(tmp_path / "train", 3)
    assert _summary(indexed) == _summary(scanned)
    assert indexed.samples[5].image == RecordRef(rec, scanned.samples[5].image.offset)
    assert indexed.report.summary() == scanned.report.summary() == \
        f"train (RecordIO): {COUNT} found, {COUNT} used, 0 skipped, 0 with errors"
    assert indexed.report.read_bytes == scanned.report.read_bytes == rec.stat().st_size
    # frame headers, then each record's label and 1 KB of image; record 5 read whole (split)
    assert sum(read) < len(_payloads()[5]) + COUNT * (recordio.PEEK + 200)
    image, label = load(indexed.samples[5])  # the loader reads the split record whole
    assert image.shape == (180, 240, 3)
    np.testing.assert_allclose(label[0, :5], [60, 45, 180, 135, 2])


def test_an_idx_that_does_not_tile_its_file_is_not_trusted(tmp_path: Path, caplog) -> None:
    rec = _write(tmp_path / "train", _payloads(), junk_after=3)
    with caplog.at_level(logging.WARNING):
        channel = read_records(tmp_path / "train", 3, defer_images=True)
    fourth = int(rec.with_suffix(".idx").read_text().split("\n")[3].split("\t")[1])
    assert caplog.messages == [
        f"train/train.rec: train.idx does not match the file (the record at byte {fourth} "
        f"ends at byte {fourth + 8 + len(_payloads()[3]) + (-len(_payloads()[3]) % 4)}, not at "
        f"{fourth + 8 + len(_payloads()[3]) + (-len(_payloads()[3]) % 4) + 120}); the file is "
        f"read whole"]
    assert len(channel.samples) == COUNT
    assert channel.report.lost_bytes == 120  # the scan found and counted the foreign bytes


def test_an_image_corrupt_past_its_header_is_left_to_the_loader(tmp_path: Path) -> None:
    payloads = _payloads()
    label = detection_label([(1, 0.25, 0.25, 0.75, 0.75)])
    payloads[7] = pack(label, truncated(_noise_jpeg(7)), 7)
    _write(tmp_path / "train", payloads)
    scanned = read_records(tmp_path / "train", 3)
    assert list(scanned.report.errors) == ["train/train.rec record 7"]
    indexed = read_records(tmp_path / "train", 3, defer_images=True)
    assert not indexed.report.errors and len(indexed.samples) == COUNT
    with pytest.raises(BadSample) as caught:
        load(indexed.samples[7])
    (problem,) = scanned.report.errors["train/train.rec record 7"]
    assert problem.startswith("image is truncated")
    assert str(caught.value) == f"train/train.rec record 7: {problem}"  # as the scan said
