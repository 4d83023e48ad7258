"""Incremental training: the optional `model` channel holds an earlier artifact of this
container (a folder or `model.tar.gz`); its weights warm-start the network when its
`num_classes`, `base_network` and `image_shape` match the job's."""

from __future__ import annotations

import contextlib
import logging
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import MODEL_INFO_FILE, PARAMS_FILE, read_model_info

LOG = logging.getLogger(__name__)

_INSTANCE_PREFIX = re.compile(r"^(arg:|aux:)?ssd\d+_")


@contextlib.contextmanager
def located_artifact(channel_dir: Path) -> Iterator[Path]:
    """The folder holding the artifact: the channel itself, a sub-folder, or an extracted
    `*.tar.gz` (extracted with tarfile's `data` filter: no paths outside, no devices; removed
    when the block ends)."""
    for info in sorted(channel_dir.rglob(MODEL_INFO_FILE)):
        yield info.parent
        return
    archives = sorted(channel_dir.rglob("*.tar.gz"))
    if archives:
        with tempfile.TemporaryDirectory(prefix="model-channel-") as target:
            try:
                with tarfile.open(archives[0]) as archive:
                    archive.extractall(target, filter="data")
            except (tarfile.TarError, OSError) as error:
                raise ClientError(f"The model channel's {archives[0].name} cannot be extracted: "
                                  f"{error}. Provide the model.tar.gz written by `train`."
                                  ) from None
            for info in sorted(Path(target).rglob(MODEL_INFO_FILE)):
                yield info.parent
                return
    raise ClientError(
        f"The model channel ({channel_dir}) holds no artifact of this container: expected "
        f"model.tar.gz or the files of /opt/ml/model ({MODEL_INFO_FILE}, {PARAMS_FILE}, …)."
    )


def check_compatible(artifact_dir: Path, num_classes: int, base_network: str,
                     image_shape: int) -> None:
    """A warm start needs the same network: name every mismatch with both values."""
    info = read_model_info(artifact_dir)
    mismatches = [f"{name}: the model has {theirs!r}, the job asks for {ours!r}"
                  for name, theirs, ours in (("num_classes", info.num_classes, num_classes),
                                             ("base_network", info.base_network, base_network),
                                             ("image_shape", info.image_shape, image_shape))
                  if theirs != ours]
    if mismatches:
        raise ClientError("The model channel's artifact cannot warm-start this job (" +
                          "; ".join(mismatches) + "). Use matching hyperparameters or "
                          "remove the model channel.")


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
