"""The files of a File-mode channel that hold many examples each (RecordIO, manifest records):
listed with everything that is not a folder, so a FIFO or a link is refused by name rather than
skipped, and opened only when `user_files` accepts them. One such file refused stops the job
(a ClientError naming it): it may hold any share of the channel's examples, so it cannot be
counted as one invalid example among many."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_files import RefusedFile, open_file


def channel_entries(channel_dir: Path, pattern: str = "*") -> list[Path]:
    """Every entry under `channel_dir` matching `pattern` that is not a folder, sorted (a link
    to a folder is not descended into: it is not listed)."""
    if not channel_dir.is_dir():
        return []
    return sorted(path for path in channel_dir.rglob(pattern) if not path.is_dir())


def open_channel_file(path: Path, channel_dir: Path, channel: str) -> BinaryIO:
    """`path` opened for reading, or a ClientError naming it when it leaves the channel
    (through a symbolic link) or is not a regular file (a FIFO, a device, a socket)."""
    name = f"{channel}/{path.relative_to(channel_dir).as_posix()}"
    try:
        return open_file(path, channel_dir, f"the {channel} channel")
    except RefusedFile as refusal:
        raise ClientError(f"The {channel} channel's file {name} {refusal}.") from None
    except OSError as error:
        raise ClientError(f"The {channel} channel's file {name} cannot be read "
                          f"({error.strerror}).") from None
