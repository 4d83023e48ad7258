"""Writing the job's files so that a full disk or a crash never leaves a half-written one.

Every file is written to a temporary name in its folder, flushed to disk (fsync) and renamed
over the final name, a group of files only once all of them are written: a reader sees the old
files or the new ones, never a truncated one. A full disk (ENOSPC, or a quota) becomes a
ClientError naming the folder, what was being written and the space it needs. MXNet's own
writers report a full disk only as "FileStream.Write incomplete" (and may lose the tail of a
file silently when it closes), so MXNet serialises into memory (`serialized_files`) and
Python writes the bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ssd_sagemaker.errors import ClientError

TEMPORARY_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _DISK_FULL


def human_size(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def free_space(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_error(folder: Path, what: str, needed: int) -> ClientError:
    """The ClientError for a full disk: the folder, what did not fit, the space it needs and
    the space left."""
    free = free_space(folder)
    left = "" if free is None else f", {human_size(free)} free"
    return ClientError(
        f"No space left on the device of {folder} while writing {what}: it needs "
        f"{human_size(needed)}{left}. Free space there or give the job a larger volume "
        f"(ResourceConfig.VolumeSizeInGB)."
    )


def temporary_path(path: Path) -> Path:
    """Where `path` is staged; hidden, so globs for the real files skip it."""
    return path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")


def _stage(path: Path, data: bytes) -> Path:
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_folder(folder: Path) -> None:
    """Make the renames durable (the folder's entries are data too)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_files(folder: Path, files: Mapping[str, bytes], what: str) -> list[Path]:
    """Write `files` (name → content) into `folder` all or nothing: each is staged and synced
    first, and renamed into place only once every one fits. A full disk removes the staged
    files and raises `disk_full_error` with the group's total size."""
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    try:
        for name, data in files.items():
            staged.append(_stage(folder / name, data))
    except OSError as error:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(folder, what, sum(len(d) for d in files.values())) from None
        raise
    for temporary, name in zip(staged, files):
        os.replace(temporary, folder / name)
    _sync_folder(folder)
    return [folder / name for name in files]


def serialized_files(save: Callable[[Path], None], names: Sequence[str]) -> dict[str, bytes]:
    """What `save(folder)` (MXNet's writers: `Block.export`, `save_parameters`) writes as
    `names` in `folder`, captured in memory: each name there is a link to an anonymous memory
    file, so neither a full disk nor a crash can leave a truncated file unnoticed."""
    descriptors = {name: os.memfd_create(f"ssd-sagemaker-{name}") for name in names}
    try:
        with tempfile.TemporaryDirectory(prefix="ssd-serialized-") as folder:
            for name, descriptor in descriptors.items():
                os.symlink(f"/proc/{os.getpid()}/fd/{descriptor}", Path(folder) / name)
            save(Path(folder))
        return {name: os.pread(descriptor, os.fstat(descriptor).st_size, 0)
                for name, descriptor in descriptors.items()}
    finally:
        for descriptor in descriptors.values():
            os.close(descriptor)


def serialized(save: Callable[[str], None]) -> bytes:
    """What `save(path)` writes to one file, captured in memory (see `serialized_files`)."""
    return serialized_files(lambda folder: save(str(folder / "file")), ["file"])["file"]


def fingerprint(data: bytes) -> dict[str, Any]:
    """What a manifest records of a file it lists: its size and SHA-256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def differs_from(path: Path, expected: Mapping[str, Any]) -> str | None:
    """Why the file at `path` is not the one `fingerprint` recorded (missing, another size,
    another SHA-256), or None when it is."""
    if not path.is_file():
        return f"{path.name} is missing"
    size = path.stat().st_size
    if size != expected["bytes"]:
        return (f"{path.name} has {size} bytes, {expected['bytes']} were written (truncated, "
                f"e.g. an interrupted copy)" if size < expected["bytes"] else
                f"{path.name} has {size} bytes, {expected['bytes']} were written")
    with path.open("rb") as handle:
        if hashlib.file_digest(handle, "sha256").hexdigest() != expected["sha256"]:
            return f"{path.name} differs from what was written (its SHA-256 does not match)"
    return None
