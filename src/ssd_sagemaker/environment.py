"""The SageMaker training/serving environment: paths under `/opt/ml`, the input config files
and the training job's `SSD_*` variables.

Every path derives from one base directory (`SAGEMAKER_BASE_DIR`, default `/opt/ml`), so tests
and local runs can move the whole tree. Reading happens in explicit functions, never at import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_files import RefusedFile, TooLarge, read_file
from ssd_sagemaker.user_json import BadJSON, parse_json, shown
from ssd_sagemaker.variables import (
    SAGEMAKER_BASE_DIR,
    SSD_HOST_RESOLVE_TIMEOUT,
    SSD_JOIN_TIMEOUT,
    SSD_PROGRESS,
    SSD_PROGRESS_TIMEOUT,
    SSD_SCHEDULER_PORT,
    TRAINING_JOB_NAME,
    VariableReader,
)

DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_HOST = "algo-1"


@dataclass(frozen=True)
class Paths:
    """Every file and folder of the SageMaker contract, relative to one base directory."""

    base: Path

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"


def paths_from_environment(environ: Mapping[str, str] = os.environ) -> Paths:
    """The contract's paths, rooted at `SAGEMAKER_BASE_DIR` when set."""
    return Paths(Path(environ.get(SAGEMAKER_BASE_DIR) or DEFAULT_BASE_DIR))


# The channel's `S3DistributionType`: every host gets all objects, or a share of them.
FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"


@dataclass(frozen=True)
class ChannelConfig:
    """One entry of `inputdataconfig.json`."""

    name: str
    content_type: str = "application/x-image"
    input_mode: str = "File"
    distribution: str = FULLY_REPLICATED
    record_wrapper: str = "None"
    # Augmented manifests: the manifest attributes sent per line, in order (e.g. source-ref,
    # bounding-box); empty for every other channel.
    attribute_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceConfig:
    """The hosts of the job (`resourceconfig.json`); one host `algo-1` when absent."""

    current_host: str = DEFAULT_HOST
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    network_interface_name: str | None = None

    @property
    def is_master(self) -> bool:
        """`hosts[0]` writes the model artifact (SageMaker sorts the host list)."""
        return self.current_host == self.hosts[0]


PROGRESS_STYLES = ("auto", "bar", "lines")


@dataclass(frozen=True)
class TrainingSettings:
    """The training job's tuning variables, read once at start (`read_training_settings`).

    `progress_style`: `SSD_PROGRESS`; `in_training_job`: `TRAINING_JOB_NAME` is set (SageMaker
    and the SDK's local mode), so nobody watches a bar; `progress_timeout`: seconds without a
    finished batch before the job stops (`SSD_PROGRESS_TIMEOUT`, before Pipe mode doubles it);
    a multi-host job's scheduler port (`SSD_SCHEDULER_PORT`, the control channel is the next),
    how long host names may take to resolve (`SSD_HOST_RESOLVE_TIMEOUT`) and every host to
    join (`SSD_JOIN_TIMEOUT`)."""

    progress_style: str = "auto"
    in_training_job: bool = False
    progress_timeout: float = 1800.0
    scheduler_port: int = 8000
    resolve_timeout: float = 300.0
    join_timeout: float = 600.0


def read_training_settings(environ: Mapping[str, str] = os.environ) -> TrainingSettings:
    """Every training variable, checked at once: a ClientError names each bad one and what
    it takes, before any config, data or network is read."""
    default = TrainingSettings()
    reader = VariableReader(environ)
    settings = TrainingSettings(
        progress_style=reader.choice(SSD_PROGRESS, default.progress_style, PROGRESS_STYLES,
                                     "bar: a tqdm bar, lines: log lines, auto: a bar only on a "
                                     "terminal outside a training job"),
        in_training_job=bool(environ.get(TRAINING_JOB_NAME)),
        progress_timeout=reader.seconds(SSD_PROGRESS_TIMEOUT, default.progress_timeout),
        scheduler_port=reader.port(SSD_SCHEDULER_PORT, default.scheduler_port, high=65534),
        resolve_timeout=reader.seconds(SSD_HOST_RESOLVE_TIMEOUT, default.resolve_timeout,
                                       zero=True),
        join_timeout=reader.seconds(SSD_JOIN_TIMEOUT, default.join_timeout, zero=True))
    reader.check("training")
    return settings


# SageMaker allows 100 hyperparameters and writes a few kilobytes of config; a file far past
# that is not a job's config, and parsing it (and listing its problems) would cost minutes.
MAX_CONFIG_BYTES = 1_000_000


def _read_json(path: Path, what: str) -> Any:
    """A config file's JSON value; a FIFO, device or socket is refused before it is opened,
    and a file over `MAX_CONFIG_BYTES` before it is read."""
    try:
        data = read_file(path, max_bytes=MAX_CONFIG_BYTES)
    except OSError as error:
        raise ClientError(f"Cannot read the {what} file {path}: {error.strerror}.") from None
    except TooLarge as problem:
        raise ClientError(f"The {what} file {path} {problem}: a job's config is a few "
                          f"kilobytes (SageMaker allows 100 hyperparameters); remove what the "
                          f"job does not use.") from None
    except RefusedFile as problem:
        raise ClientError(f"The {what} file {path} {problem}.") from None
    try:
        return parse_json(data)
    except BadJSON as problem:
        raise ClientError(f"The {what} file {path} {problem}.") from None


def read_hyperparameters(paths: Paths) -> dict[str, Any]:
    """The raw `hyperparameters.json` mapping (absent file → no hyperparameters given)."""
    if not paths.hyperparameters_file.exists():
        return {}
    raw = _read_json(paths.hyperparameters_file, "hyperparameters")
    if not isinstance(raw, dict):
        raise ClientError(
            f"The hyperparameters file {paths.hyperparameters_file} must hold a JSON object "
            f'({{"name": "value", ...}}), not a {type(raw).__name__}.'
        )
    return raw


# SageMaker's ChannelName: 1-64 of these characters ("." and ".." would leave input/data).
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
# Host names as SageMaker writes them (algo-1, algo-2, ...): DNS labels, at most 253 characters.
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,252}")
_CHANNEL_TEXT_KEYS = {"content_type": ("ContentType", "application/x-image"),
                      "input_mode": ("TrainingInputMode", "File"),
                      "distribution": ("S3DistributionType", FULLY_REPLICATED),
                      "record_wrapper": ("RecordWrapperType", "None")}


def _channel_name(paths: Paths, name: str) -> str:
    if not _CHANNEL_NAME.fullmatch(name) or name in (".", ".."):
        raise ClientError(
            f"{paths.input_data_config_file}: the channel name {shown(name)} is not a "
            f"SageMaker channel name (1-64 letters, digits, '.', '-' or '_'), e.g. 'train'.")
    return name


def _channel_text(paths: Paths, channel: str, entry: Mapping[str, Any], key: str,
                  default: str) -> str:
    value = entry.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ClientError(f"{paths.input_data_config_file}: channel '{channel}' has {key} "
                          f"{shown(value)}; it must be a string, e.g. {default!r}.")
    return value


def _attribute_names(paths: Paths, channel: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise ClientError(
            f"{paths.input_data_config_file}: channel '{channel}' has AttributeNames "
            f"{shown(raw)}; it must be a list of attribute names, e.g. "
            f'["source-ref", "bounding-box"].')
    return tuple(raw)


def read_channels(paths: Paths) -> dict[str, ChannelConfig]:
    """Channels from `inputdataconfig.json`; when run by hand without it, every folder under
    `input/data` is a File-mode image channel."""
    if not paths.input_data_config_file.exists():
        if not paths.data_dir.is_dir():
            return {}
        return {d.name: ChannelConfig(d.name)
                for d in sorted(paths.data_dir.iterdir()) if d.is_dir()}
    raw = _read_json(paths.input_data_config_file, "input data config")
    if not isinstance(raw, dict):
        raise ClientError(f"{paths.input_data_config_file} must hold a JSON object of channels.")
    channels = {}
    for name, entry in raw.items():
        name = _channel_name(paths, name)
        if not isinstance(entry, dict):
            raise ClientError(f"{paths.input_data_config_file}: channel '{name}' must be a JSON "
                              f'object such as {{"ContentType": "image/jpeg"}}, not '
                              f"{shown(entry)}.")
        texts = {field_name: _channel_text(paths, name, entry, key, default)
                 for field_name, (key, default) in _CHANNEL_TEXT_KEYS.items()}
        channels[name] = ChannelConfig(
            name=name, **texts,
            attribute_names=_attribute_names(paths, name, entry.get("AttributeNames")))
    return channels


def read_resource_config(paths: Paths) -> ResourceConfig:
    """Hosts from `resourceconfig.json`; absent → a single host `algo-1`."""
    if not paths.resource_config_file.exists():
        return ResourceConfig()
    raw = _read_json(paths.resource_config_file, "resource config")
    hosts = raw.get("hosts") if isinstance(raw, dict) else None
    current = raw.get("current_host") if isinstance(raw, dict) else None
    interface = raw.get("network_interface_name") if isinstance(raw, dict) else None
    if not hosts or not isinstance(hosts, list) or current not in hosts:
        raise ClientError(
            f"{paths.resource_config_file} must name `hosts` (a list) and a `current_host` "
            f"among them; got hosts={shown(hosts, 120)}, current_host={shown(current)}.")
    bad = [host for host in hosts if not isinstance(host, str) or not _HOST_NAME.fullmatch(host)]
    if bad:
        raise ClientError(
            f"{paths.resource_config_file}: the host {shown(bad[0])} is not a host "
            f"name (letters, digits, '.', '-', '_'; e.g. 'algo-1').")
    if interface is not None and not isinstance(interface, str):
        raise ClientError(f"{paths.resource_config_file}: network_interface_name must be a "
                          f"string such as 'eth0', not {shown(interface)}.")
    _refuse_heterogeneous(paths, raw.get("instance_groups"))
    assert isinstance(current, str)  # it is one of `hosts`, each checked to be a host name
    return ResourceConfig(current_host=current, hosts=tuple(sorted(hosts)),
                          network_interface_name=interface)


def _refuse_heterogeneous(paths: Paths, groups: Any) -> None:
    """A heterogeneous cluster (several `instance_groups`, each its own instance type) is
    refused: training runs one parameter-server job over identical hosts and would split the
    work evenly between, say, a GPU and a CPU group. One group (SageMaker writes
    `homogeneousCluster` for every job now) or none is the ordinary case."""
    if not isinstance(groups, list) or len(groups) <= 1:
        return
    named = [f"{shown(group.get('instance_group_name'), 60)} "
             f"({shown(group.get('instance_type'), 40)}: {shown(group.get('hosts'), 60)})"
             if isinstance(group, dict) else shown(group, 60) for group in groups[:10]]
    more = f" and {len(groups) - 10} more" if len(groups) > 10 else ""
    raise ClientError(
        f"{paths.resource_config_file}: a heterogeneous cluster of {len(groups)} instance "
        f"groups ({', '.join(named)}{more}) is not supported; train on one instance group "
        f"(one instance type and count, `instance_type`/`instance_count` of the estimator).")
