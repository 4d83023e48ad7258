"""Incremental training: the optional `model` channel holds an earlier artifact of this
container (a folder or `model.tar.gz`); its weights warm-start the network when its
`num_classes`, `base_network` and `image_shape` match the job's."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.data.formats.channel_files import channel_entries, check_channel_file
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    MODEL_INFO_FILE,
    PARAMS_FILE,
    read_model_info,
    verify_manifest,
)
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.storage import disk_full_error, is_disk_full

LOG = logging.getLogger(__name__)

_INSTANCE_PREFIX = re.compile(r"^(arg:|aux:)?ssd\d+_")


_MEMBER_KINDS = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                 tarfile.FIFOTYPE: "a FIFO"}


def _refuse(archive: Path, member: tarfile.TarInfo, why: str) -> ClientError:
    return ClientError(f"The model channel's {archive.name} holds {member.name!r}, {why}; it "
                       f"was not extracted. Provide the model.tar.gz written by `train`.")


def _inside(root: str, relative: str, archive: Path, member: tarfile.TarInfo, what: str) -> str:
    """`root/relative` with every link already extracted resolved, refused unless it stays
    within `root` (`what` says which of the member's paths this is, for the message)."""
    if os.path.isabs(relative):
        raise _refuse(archive, member, f"{what} is absolute")
    resolved = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, resolved]) != root:
        raise _refuse(archive, member, f"{what} leads outside the archive's folder")
    return resolved


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, root: str,
                    archive_path: Path) -> str:
    """Extract one member (every path checked as the folder is now); where it went."""
    destination = _inside(root, member.name, archive_path, member, "whose path")
    if member.isdir():
        os.makedirs(destination, exist_ok=True)
        return destination
    if member.issym():
        _inside(root, os.path.join(os.path.dirname(member.name), member.linkname), archive_path,
                member, f"a symbolic link to {member.linkname!r}, whose target")
    elif member.islnk():
        _inside(root, member.linkname, archive_path, member,
                f"a hard link to {member.linkname!r}, whose target")
    elif not member.isfile():
        raise _refuse(archive_path, member,
                      _MEMBER_KINDS.get(member.type, "an entry of an unsupported type"))
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    if member.issym():
        os.symlink(member.linkname, destination)
        return destination
    try:
        source = archive.extractfile(member)  # a hard link's data is its target member's
    except KeyError:  # a hard link to a member the archive does not hold
        source = None
    if source is None:  # a hard link to a directory, a link or nothing
        raise _refuse(archive_path, member, f"a hard link to {member.linkname!r}, which is not "
                                            f"a file of the archive")
    with source, open(destination, "xb") as handle:  # exclusive: never through a link
        shutil.copyfileobj(source, handle)
    return destination


def extract_archive(archive_path: Path, target: Path) -> None:
    """Extract a tarball member by member, refusing (ClientError naming the member) any that
    would leave `target`: absolute or `..` paths, paths through an extracted link, links
    pointing outside; devices and FIFOs too. Files get default permissions and owner. The
    checks are our own: tarfile's `filter=` arrived in Python 3.11.4, the image's Debian
    bookworm Python is 3.11.2."""
    root = os.path.realpath(target)
    try:
        with tarfile.open(archive_path) as archive:
            links = [(member, _extract_member(archive, member, root, archive_path))
                     for member in archive]
        for member, destination in links:  # a later link may have re-pointed an earlier one
            if member.issym():
                _inside(root, os.path.relpath(destination, root), archive_path, member,
                        f"a symbolic link to {member.linkname!r}, whose target")
    except (tarfile.TarError, EOFError, zlib.error, KeyError, OSError) as error:
        if is_disk_full(error):
            raise disk_full_error(target.parent, f"the extracted {archive_path.name}",
                                  _extracted_size(archive_path)) from None
        raise ClientError(f"The model channel's {archive_path.name} cannot be extracted: "
                          f"{error}. Provide the model.tar.gz written by `train`.") from None


def _extracted_size(archive_path: Path) -> int:
    with tarfile.open(archive_path) as archive:
        return sum(member.size for member in archive if member.isfile())


@contextlib.contextmanager
def located_artifact(channel_dir: Path) -> Iterator[Path]:
    """The folder holding the artifact: the channel itself, a sub-folder, or an extracted
    `*.tar.gz` (see `extract_archive`; removed when the block ends). The channel's files read
    must be regular files inside it (a ClientError names a link leading out, or a FIFO)."""
    for info in sorted(channel_dir.rglob(MODEL_INFO_FILE)):
        for entry in channel_entries(info.parent):
            check_channel_file(entry, channel_dir, channel_dir.name)
        yield info.parent
        return
    archives = sorted(channel_dir.rglob("*.tar.gz"))
    if archives:
        check_channel_file(archives[0], channel_dir, channel_dir.name)
        with tempfile.TemporaryDirectory(prefix="model-channel-") as target:
            extract_archive(archives[0], Path(target))
            for info in sorted(Path(target).rglob(MODEL_INFO_FILE)):
                yield info.parent
                return
    raise ClientError(
        f"The model channel ({channel_dir}) holds no artifact of this container: expected "
        f"model.tar.gz or the files of /opt/ml/model ({MODEL_INFO_FILE}, {PARAMS_FILE}, …)."
    )


def check_compatible(artifact_dir: Path, wanted: NetworkIdentity) -> None:
    """A warm start needs the same network (name every mismatch with both values) and files
    that match the artifact's manifest."""
    info = read_model_info(artifact_dir)
    mismatches = NetworkIdentity(info.base_network, info.image_shape,
                                 info.num_classes).mismatches(wanted, "the model")
    if mismatches:
        raise ClientError("The model channel's artifact cannot warm-start this job (" +
                          "; ".join(mismatches) + "). Use matching hyperparameters or "
                          "remove the model channel.")
    verify_manifest(artifact_dir)


def read_weights(artifact_dir: Path) -> dict[str, mx.nd.NDArray]:
    """The exported parameters by name, per-instance prefixes removed (kept in memory, so the
    artifact's folder may go)."""
    return {_INSTANCE_PREFIX.sub("", name): value
            for name, value in mx.nd.load(str(artifact_dir / PARAMS_FILE)).items()}


def load_weights(net: gluon.Block, saved: dict[str, mx.nd.NDArray]) -> None:
    """Copy `read_weights`' parameters into `net` by name."""
    missing = []
    for name, param in net.collect_params().items():
        value = saved.get(_INSTANCE_PREFIX.sub("", name))
        if value is None or value.shape != param.shape:
            missing.append(name)
            continue
        param.set_data(value)
    if missing:
        raise ClientError(f"The model channel's {PARAMS_FILE} does not fit the network: "
                          f"{len(missing)} parameters missing or of another shape (first: "
                          f"{missing[0]}).")
    LOG.info("warm start: loaded %d parameters from the model channel",
             len(net.collect_params().keys()))
