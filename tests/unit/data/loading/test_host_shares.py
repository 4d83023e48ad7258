"""Each host of a multi-host job reads only its share of a FullyReplicated channel. Image +
JSON: the share is chosen from the sorted file names before any file is opened, and before
training only the share's annotation files are opened (its images are checked by the loader
as they are used). RecordIO: the share is records `index`, `index + count`, ... in file order,
and through an `.idx` only their labels are read. Augmented manifests: lines chosen alike,
checked by their host alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from planting import detection_label, manifest_records, write_stream
from ssd_sagemaker.data.channels import read_training_data
from ssd_sagemaker.data.formats import image_json, manifest, recordio
from ssd_sagemaker.data.formats.recordio import pack, write_record
from ssd_sagemaker.data.loading.sharding import Shard
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.hyperparameters import parse_hyperparameters

IMAGES = 7


def _opened_by_host(tmp_path: Path, monkeypatch, index: int) -> tuple[list[str], list[str], int]:
    """(files opened, samples taken, the channel's size as the trainer sees it) for host
    `index` of 2."""
    paths = Paths(tmp_path)
    if not paths.channel_dir("train").exists():
        write_annotated_channel(paths.channel_dir("train"),
                                paths.channel_dir("train_annotation"), IMAGES, seed=3)
    opened: list[str] = []
    real = image_json.read_file

    def counting(path, *args, **kwargs):
        opened.append(Path(path).relative_to(paths.data_dir).as_posix())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(image_json, "read_file", counting)
    try:
        return _read(paths, index, opened)
    finally:
        monkeypatch.setattr(image_json, "read_file", real)


def _read(paths: Paths, index: int, opened: list[str]) -> tuple[list[str], list[str], int]:
    channels = {name: ChannelConfig(name, "image/jpeg") for name in ("train", "train_annotation")}
    hp = parse_hyperparameters({"num_classes": "3", "num_training_samples": str(IMAGES)})
    data = read_training_data(paths, channels, hp, Shard(index, 2))
    return opened, [s.origin for s in data.train.validation_pass()], data.train.num_images


def test_each_of_two_hosts_opens_only_its_share_and_the_shares_cover_the_channel(
        tmp_path: Path, monkeypatch) -> None:
    first, taken_first, total_first = _opened_by_host(tmp_path, monkeypatch, 0)
    second, taken_second, total_second = _opened_by_host(tmp_path, monkeypatch, 1)
    names = [f"img_{i:04d}" for i in range(IMAGES)]
    assert first == [f"train_annotation/{n}.json" for n in names[0::2]]
    assert second == [f"train_annotation/{n}.json" for n in names[1::2]]
    assert taken_first == [f"train/{n}.jpg" for n in names[0::2]]
    assert taken_second == [f"train/{n}.jpg" for n in names[1::2]]
    assert not set(taken_first) & set(taken_second)
    assert total_first == total_second == IMAGES  # both plan the same epoch length


def _recordio_channel(paths: Paths, with_idx: bool) -> list[int]:
    """train.rec of IMAGES small records (and its .idx when `with_idx`); the records' offsets."""
    channel = paths.channel_dir("train")
    channel.mkdir(parents=True)
    offsets = []
    with open(channel / "train.rec", "wb") as stream:
        for index in range(IMAGES):
            offsets.append(stream.tell())
            image = cv2.imencode(".jpg", np.full((40, 60, 3), 30 * index, np.uint8))[1]
            write_record(stream, pack(detection_label([(index % 3, 0.2, 0.2, 0.8, 0.8)]),
                                      image.tobytes(), index))
    if with_idx:
        (channel / "train.idx").write_text("".join(f"{i}\t{o}\n" for i, o in enumerate(offsets)))
    return offsets


def _records_read_by_host(paths: Paths, monkeypatch, index: int) -> tuple[list[int], list[str],
                                                                         int]:
    """(offsets whose labels were read, samples taken, the channel's size as the trainer sees
    it) for host `index` of 2 of a FullyReplicated RecordIO channel."""
    heads: list[int] = []
    real = recordio._record_head
    monkeypatch.setattr(recordio, "_record_head",
                        lambda descriptor, offset: heads.append(offset) or real(descriptor,
                                                                                offset))
    hp = parse_hyperparameters({"num_classes": "3", "num_training_samples": str(IMAGES)})
    data = read_training_data(paths, {"train": ChannelConfig("train", "application/x-recordio")},
                              hp, Shard(index, 2))
    monkeypatch.setattr(recordio, "_record_head", real)
    return heads, [s.origin for s in data.train.validation_pass()], data.train.num_images


@pytest.mark.parametrize("with_idx", [True, False])
def test_each_of_two_hosts_reads_the_labels_of_its_share_of_a_recordio_channel(
        tmp_path: Path, monkeypatch, with_idx: bool) -> None:
    paths = Paths(tmp_path)
    offsets = _recordio_channel(paths, with_idx)
    for index in (0, 1):
        heads, taken, total = _records_read_by_host(paths, monkeypatch, index)
        # through the .idx, only the share's records are read (label and image header);
        # without one the file is scanned whole, but only the share is checked and taken
        assert heads == (offsets[index::2] if with_idx else [])
        assert taken == [f"train/train.rec record {k}" for k in range(index, IMAGES, 2)]
        assert total == IMAGES  # both hosts plan the same epoch length


def test_each_of_two_hosts_checks_only_its_share_of_a_manifest_channel(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Manifest lines have no index: both files are read whole, but a host checks only its
    lines (positions across the files in name order) and still learns every class name."""
    paths = Paths(tmp_path)
    records = manifest_records(IMAGES)
    write_stream(paths.channel_dir("train") / "a.rec", records[:3 * 3])  # lines 0-2
    write_stream(paths.channel_dir("train") / "b.rec", records[3 * 3:])  # lines 3-6
    config = ChannelConfig("train", "application/x-recordio", record_wrapper="RecordIO",
                           attribute_names=("source-ref", "bounding-box",
                                            "bounding-box-metadata"))
    hp = parse_hyperparameters({"num_classes": "3", "num_training_samples": str(IMAGES)})
    lines = [f"train/a.rec line {k}" for k in range(3)] + \
        [f"train/b.rec line {k}" for k in range(4)]
    real = manifest._sample
    checked: list[str] = []
    monkeypatch.setattr(manifest, "_sample", lambda entry, attributes, origin, *rest:
                        checked.append(origin) or real(entry, attributes, origin, *rest))
    for index in (0, 1):
        checked.clear()
        data = read_training_data(paths, {"train": config}, hp, Shard(index, 2))
        assert checked == lines[index::2]
        assert [s.origin for s in data.train.validation_pass()] == lines[index::2]
        assert data.train.num_images == IMAGES
        assert data.class_names == {0: "circle", 1: "square", 2: "triangle"}
