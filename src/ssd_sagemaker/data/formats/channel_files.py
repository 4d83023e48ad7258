"""The files of a File-mode channel that are read whole, not as one example each (RecordIO
files, manifest records, the model channel's artifact): listed with everything that is not a
folder, so a FIFO or a link is refused by name rather than skipped, and opened only when
`user_files` accepts them. One such file refused stops the job (a ClientError naming it): it may
hold any share of the channel's examples, so it cannot count as one invalid example among many."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_files import Boundary, RefusedFile, checked_file, open_file


def channel_entries(channel_dir: Path, pattern: str = "*") -> list[Path]:
    """Every entry under `channel_dir` matching `pattern` that is not a folder, sorted (a link
    to a folder is not descended into: it is not listed)."""
    if not channel_dir.is_dir():
        return []
    return sorted(path for path in channel_dir.rglob(pattern) if not path.is_dir())


@contextlib.contextmanager
def _refusals(path: Path, channel_dir: Path, channel: str) -> Iterator[None]:
    """A refusal or read error of `path` as a ClientError naming it within its channel."""
    name = f"{channel}/{path.relative_to(channel_dir).as_posix()}"
    try:
        yield
    except RefusedFile as refusal:
        raise ClientError(f"The {channel} channel's file {name} {refusal}.") from None
    except OSError as error:
        raise ClientError(f"The {channel} channel's file {name} cannot be read "
                          f"({error.strerror}).") from None


def check_channel_file(path: Path, channel_dir: Path, channel: str) -> None:
    """A ClientError naming `path` when it leaves the channel (through a symbolic link) or is
    not a regular file (a FIFO, a device, a socket), for files another module opens."""
    with _refusals(path, channel_dir, channel):
        checked_file(path, Boundary(channel_dir, f"the {channel} channel"))


def open_channel_file(path: Path, channel_dir: Path, channel: str) -> BinaryIO:
    """`path` opened for reading after `check_channel_file`'s checks (and again on the open
    file, without blocking)."""
    with _refusals(path, channel_dir, channel):
        return open_file(path, Boundary(channel_dir, f"the {channel} channel"))
