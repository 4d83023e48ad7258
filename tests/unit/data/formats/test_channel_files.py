"""channel_files.py through the readers that use it: a RecordIO or manifest file that leaves its
channel through a link, or is a FIFO, stops the job with a ClientError naming it (never read,
never a hang); links inside the channel are read as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deadline import deadline
from planting import image_records, manifest_records, write_records
from reading import read_manifest, read_records
from ssd_sagemaker.data.formats.channel_files import channel_entries
from ssd_sagemaker.data.formats.manifest import Attributes
from ssd_sagemaker.errors import ClientError

NAMES = ("source-ref", "bounding-box", "bounding-box-metadata")
LEAVES = ("is a symbolic link, or lies under one, that leads outside the train channel ({}); "
          "copy the file into the channel instead of linking to it.")


def _read(kind: str, channel: Path) -> int:
    """Samples read from `channel` as a RecordIO or a manifest channel."""
    if kind == "recordio":
        return len(read_records(channel, 3).samples)
    return len(read_manifest(channel, Attributes.from_names("train", NAMES), 3).samples)


def _records(kind: str) -> list[bytes]:
    return image_records(2) if kind == "recordio" else manifest_records(2)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "passwd").write_text("root:x:0:0:SECRET\n")
    return folder


@pytest.mark.parametrize("kind", ["recordio", "manifest"])
@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_file_linking_outside_the_channel_stops_the_job_by_name(tmp_path: Path, outside: Path,
                                                                   kind: str, link: str) -> None:
    channel = tmp_path / "train"
    write_records(channel / "a.rec", _records(kind), index=False)
    if link == "file":
        (channel / "b.rec").symlink_to(outside / "passwd")
        culprit = "train/b.rec"
    else:
        (outside / "c.rec").symlink_to(outside / "passwd")
        (channel / "sub").mkdir()
        (channel / "sub" / "c.rec").symlink_to("../../elsewhere/c.rec")
        culprit = "train/sub/c.rec"
    with pytest.raises(ClientError) as refused:
        _read(kind, channel)
    assert str(refused.value) == f"The train channel's file {culprit} " + LEAVES.format(channel)
    assert "root:x" not in str(refused.value) and "SECRET" not in str(refused.value)


@pytest.mark.parametrize("kind", ["recordio", "manifest"])
def test_a_fifo_in_the_channel_is_refused_not_opened(tmp_path: Path, kind: str) -> None:
    channel = tmp_path / "train"
    write_records(channel / "a.rec", _records(kind), index=False)
    os.mkfifo(channel / "b.rec")
    with deadline(10), pytest.raises(ClientError, match=r"^The train channel's file train/b.rec "
                                                        r"is a FIFO \(named pipe\), not a "
                                                        r"regular file"):
        _read(kind, channel)


@pytest.mark.parametrize("kind", ["recordio", "manifest"])
def test_links_inside_the_channel_are_read(tmp_path: Path, kind: str) -> None:
    channel = tmp_path / "train"
    write_records(channel / "parts" / "a.rec", _records(kind), index=False)
    (channel / "b.rec").symlink_to("parts/a.rec")
    assert _read(kind, channel) == 4


def test_entries_list_everything_but_folders(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.rec").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.rec")
    (tmp_path / "gone.rec").symlink_to("nothing")
    (tmp_path / "elsewhere.rec").symlink_to(outside)  # a folder link: not descended, not listed
    assert channel_entries(tmp_path, "*.rec") == [tmp_path / "gone.rec", tmp_path / "pipe.rec",
                                                  tmp_path / "sub" / "a.rec"]
    assert channel_entries(tmp_path / "absent") == []
