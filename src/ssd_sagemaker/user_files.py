"""Files the job's user provides (config files, channel contents), opened only when they are
what they claim to be: a regular file, inside its channel, of bounded size when a bound applies.

A channel's folder holds the user's data, but a symbolic link in it can lead anywhere on the
host (`/etc/passwd`, `/proc/self/environ`): a path is resolved and must stay under the
channel's resolved root (links that stay inside keep working). A FIFO, a device or a socket is
refused before `open()`: opening a FIFO blocks until a writer comes, for ever in a job, and
opening a device may act on it. The open itself is non-blocking and re-checked with `fstat`,
so a file swapped for a FIFO after the check cannot block either. A refusal describes the
file (its kind, its size), never a byte of it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISDIR, "a directory"))


class RefusedFile(ValueError):
    """The file may not be read. The message is a predicate ("is a FIFO ..."); callers put
    the file's name in front."""


class TooLarge(RefusedFile):
    """The file is over the size limit of its kind (checked before reading)."""


def _check_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "a special file")
    raise RefusedFile(f"is {kind}, not a regular file; put the file itself there")


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"is {size:,} bytes, over the limit of {max_bytes:,} bytes")


@dataclass(frozen=True)
class Boundary:
    """A folder that reads must not leave, resolved once (a channel holds thousands of
    files); `what` names it in messages, e.g. "the train channel"."""

    folder: Path
    what: str
    real: str = field(init=False)
    prefix: str = field(init=False)  # the folder as written, with a trailing separator

    def __post_init__(self) -> None:
        object.__setattr__(self, "real", os.path.realpath(self.folder))
        object.__setattr__(self, "prefix", os.path.join(os.fspath(self.folder), ""))


def _real_below(path: str | Path, boundary: Boundary) -> str | None:
    """`path`'s real path when it is written under the boundary's folder and no component
    below the folder is a link, `.` or `..`: the folder's real path (resolved once) joined
    with the rest, one `lstat` per component below the folder instead of one per component
    from the root (a channel holds thousands of files); None otherwise (resolve it whole)."""
    text = os.fspath(path)
    if not text.startswith(boundary.prefix):
        return None
    parts = text[len(boundary.prefix):].split(os.sep)
    if any(part in ("", ".", "..") for part in parts):
        return None
    real = boundary.real
    for part in parts:
        real = os.path.join(real, part)
        try:
            if stat.S_ISLNK(os.lstat(real).st_mode):
                return None
        except OSError:
            return None  # absent or unreadable: os.path.realpath decides as it always did
    return real


def _resolved(path: str | Path, boundary: Boundary) -> str:
    """As `inside`, as a string."""
    below = _real_below(path, boundary)
    if below is not None:
        return below
    real = os.path.realpath(path)
    if os.path.commonpath([boundary.real, real]) != boundary.real:
        raise RefusedFile(f"is a symbolic link, or lies under one, that leads outside "
                          f"{boundary.what} ({boundary.folder}); copy the file into the channel "
                          f"instead of linking to it")
    return real


def inside(path: Path, boundary: Boundary) -> Path:
    """`path` resolved (every link followed), refused unless it stays in `boundary`."""
    return Path(_resolved(path, boundary))


def checked_file(path: Path, boundary: Boundary | None = None,
                 max_bytes: int | None = None) -> Path:
    """The path to read `path` through: resolved and kept in `boundary` (when given), a
    regular file of at most `max_bytes`; RefusedFile otherwise, OSError when it cannot be
    examined (absent, no permission)."""
    return Path(checked_path(path, boundary, max_bytes))


def checked_path(path: str | Path, boundary: Boundary | None = None,
                 max_bytes: int | None = None) -> str:
    """As `checked_file`, the path as a string (a channel's thousands of files need no Path
    object each)."""
    real = _resolved(path, boundary) if boundary is not None else os.fspath(path)
    status = os.stat(real)
    _check_regular(status.st_mode)
    _check_size(status.st_size, max_bytes)
    return real


def open_file(path: Path, boundary: Boundary | None = None,
              max_bytes: int | None = None) -> BinaryIO:
    """`path` opened for reading after `checked_file`'s checks, without blocking, and checked
    again on the open file (it may have been replaced in between)."""
    real = checked_path(path, boundary, max_bytes)
    descriptor = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    stream = os.fdopen(descriptor, "rb")
    try:
        _check_regular(os.fstat(descriptor).st_mode)
        os.set_blocking(descriptor, True)
    except BaseException:
        stream.close()
        raise
    return stream


def read_file(path: Path, boundary: Boundary | None = None,
              max_bytes: int | None = None) -> bytes:
    """The bytes of `path`, opened as `open_file` does; at most `max_bytes` are read even if
    the file grew after the check."""
    with open_file(path, boundary, max_bytes) as stream:
        data = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
    if max_bytes is not None:
        _check_size(len(data), max_bytes)
    return data


__all__ = ["Boundary", "RefusedFile", "TooLarge", "checked_file", "checked_path", "inside",
           "open_file", "read_file"]
