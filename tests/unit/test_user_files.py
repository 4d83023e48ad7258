"""user_files.py: a path is read only when it is a regular file that stays inside its root and
within its size bound; FIFOs, devices, sockets and folders are refused without blocking, links
that leave the root by name, and no refusal holds a byte of the file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from deadline import deadline
from ssd_sagemaker.user_files import (
    Boundary,
    RefusedFile,
    TooLarge,
    checked_file,
    open_file,
    read_file,
)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "a.json").write_text('{"a": 1}')
    return channel


@pytest.fixture()
def train(root: Path) -> Boundary:
    return Boundary(root, "the train channel")


def test_a_regular_file_inside_is_read(root: Path, train: Boundary) -> None:
    assert read_file(root / "a.json", train) == b'{"a": 1}'


def test_links_that_stay_inside_keep_working(root: Path, train: Boundary) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "b.json").write_text("[2]")
    (root / "link.json").symlink_to("a.json")
    (root / "sublink").symlink_to("sub")
    (root / "sub" / "up.json").symlink_to("../a.json")
    assert read_file(root / "link.json", train) == b'{"a": 1}'
    assert read_file(root / "sublink" / "b.json", train) == b"[2]"
    assert read_file(root / "sub" / "up.json", train) == b'{"a": 1}'
    assert checked_file(root / "link.json", train) == (root / "a.json").resolve()


@pytest.mark.parametrize("make", ["file link", "folder link", "relative link"])
def test_links_leaving_the_root_are_refused_without_reading(root: Path, train: Boundary,
                                                            tmp_path: Path, make: str) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    path = {"file link": root / "passwd.json", "folder link": root / "etc" / "passwd",
            "relative link": root / "up.json"}[make]
    {"file link": lambda: path.symlink_to(secret / "passwd"),
     "folder link": lambda: path.parent.symlink_to(secret),
     "relative link": lambda: path.symlink_to("../secret/passwd")}[make]()
    with pytest.raises(RefusedFile) as refused:
        read_file(path, train)
    message = str(refused.value)
    assert message.startswith("is a symbolic link, or lies under one, that leads outside the "
                              f"train channel ({root}); copy the file into the channel")
    assert "root:" not in message


def test_a_fifo_is_refused_before_it_is_opened(root: Path, train: Boundary) -> None:
    os.mkfifo(root / "pipe.json")
    with deadline(5), pytest.raises(RefusedFile, match=r"^is a FIFO \(named pipe\), not a "
                                                       r"regular file; put the file itself"):
        read_file(root / "pipe.json", train)


def test_a_link_to_a_fifo_is_refused_too(root: Path, train: Boundary) -> None:
    os.mkfifo(root / "pipe")
    (root / "link.json").symlink_to("pipe")
    with deadline(5), pytest.raises(RefusedFile, match="is a FIFO"):
        read_file(root / "link.json", train)


def test_devices_sockets_and_folders_are_refused(root: Path, train: Boundary) -> None:
    with pytest.raises(RefusedFile, match="^is a character device, not a regular file"):
        read_file(Path("/dev/null"))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock.json"))
        with pytest.raises(RefusedFile, match="^is a socket, not a regular file"):
            read_file(root / "sock.json", train)
    with pytest.raises(RefusedFile, match="^is a directory, not a regular file"):
        read_file(root, train)


def test_a_fifo_swapped_in_after_the_check_does_not_block(root: Path, train: Boundary,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The open is non-blocking and checked again with fstat: the file checked was regular,
    the one opened is a FIFO with no writer."""
    import ssd_sagemaker.user_files as user_files

    os.mkfifo(root / "pipe")
    monkeypatch.setattr(user_files, "checked_path", lambda *args, **kwargs: str(root / "pipe"))
    with deadline(5), pytest.raises(RefusedFile, match="is a FIFO"):
        open_file(root / "a.json", train)


def test_a_file_over_the_bound_is_refused_from_its_size(root: Path, train: Boundary) -> None:
    big = root / "big.json"
    big.write_bytes(b" " * 2_000_001)
    with pytest.raises(TooLarge, match=r"^is 2,000,001 bytes, over the limit of 1,000,000 "
                                       r"bytes$"):
        read_file(big, train, max_bytes=1_000_000)
    assert read_file(root / "a.json", train, max_bytes=8) == b'{"a": 1}'


def test_an_absent_file_is_an_os_error(root: Path, train: Boundary) -> None:
    with pytest.raises(FileNotFoundError):
        read_file(root / "gone.json", train)
    (root / "dangling.json").symlink_to("gone.json")
    with pytest.raises(FileNotFoundError):
        read_file(root / "dangling.json", train)


def test_a_file_below_its_channel_is_resolved_from_the_channels_real_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel's folder is resolved once; a file below it costs one lstat per component
    below the folder (no realpath from /), and a link below it is still followed and judged."""
    real = tmp_path / "data" / "train"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "b.json").write_text("[2]")
    (real / "sub" / "out.json").symlink_to(tmp_path / "data" / "elsewhere.json")
    (tmp_path / "data" / "elsewhere.json").write_text("{}")
    (tmp_path / "channel").symlink_to(real)  # the channel folder itself is reached by a link
    boundary = Boundary(tmp_path / "channel", "the train channel")
    resolved: list[str] = []
    realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda path: resolved.append(path) or
                        realpath(path))
    assert checked_file(tmp_path / "channel" / "sub" / "b.json", boundary) == \
        real / "sub" / "b.json"
    assert resolved == []
    with pytest.raises(RefusedFile, match="leads outside the train channel"):
        checked_file(tmp_path / "channel" / "sub" / "out.json", boundary)
    assert resolved == [tmp_path / "channel" / "sub" / "out.json"]  # the link: resolved whole
