"""The SageMaker training/serving environment: paths under `/opt/ml` and the input config files.

Every path derives from one base directory (`SAGEMAKER_BASE_DIR`, default `/opt/ml`), so tests
and local runs can move the whole tree. Reading happens in explicit functions, never at import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ssd_sagemaker.errors import ClientError

BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"
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


def paths_from_environment(environ: Mapping[str, str] | None = None) -> Paths:
    """The contract's paths, rooted at `SAGEMAKER_BASE_DIR` when set."""
    environ = os.environ if environ is None else environ
    return Paths(Path(environ.get(BASE_DIR_VARIABLE) or DEFAULT_BASE_DIR))


@dataclass(frozen=True)
class ChannelConfig:
    """One entry of `inputdataconfig.json`."""

    name: str
    content_type: str = "application/x-image"
    input_mode: str = "File"
    distribution: str = "FullyReplicated"
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


@dataclass(frozen=True)
class TrainingEnvironment:
    """What `train` reads from `/opt/ml/input/config`, parsed once."""

    paths: Paths
    hyperparameters: Mapping[str, Any]
    channels: Mapping[str, ChannelConfig] = field(default_factory=dict)
    resources: ResourceConfig = ResourceConfig()


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ClientError(f"Cannot read the {what} file {path}: {error.strerror}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ClientError(
            f"The {what} file {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}."
        ) from None


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


def _attribute_names(paths: Paths, channel: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise ClientError(
            f"{paths.input_data_config_file}: channel '{channel}' has AttributeNames {raw!r}; "
            f'it must be a list of attribute names, e.g. ["source-ref", "bounding-box"].')
    return tuple(raw)


def read_channels(paths: Paths) -> dict[str, ChannelConfig]:
    """Channels from `inputdataconfig.json`; when run by hand without it, every folder under
    `input/data` is a File-mode image channel."""
    if not paths.input_data_config_file.exists():
        if not paths.data_dir.is_dir():
            return {}
        return {d.name: ChannelConfig(d.name) for d in sorted(paths.data_dir.iterdir()) if d.is_dir()}
    raw = _read_json(paths.input_data_config_file, "input data config")
    if not isinstance(raw, dict):
        raise ClientError(f"{paths.input_data_config_file} must hold a JSON object of channels.")
    channels = {}
    for name, entry in raw.items():
        entry = entry if isinstance(entry, dict) else {}
        channels[name] = ChannelConfig(
            name=name,
            content_type=str(entry.get("ContentType") or "application/x-image"),
            input_mode=str(entry.get("TrainingInputMode") or "File"),
            distribution=str(entry.get("S3DistributionType") or "FullyReplicated"),
            record_wrapper=str(entry.get("RecordWrapperType") or "None"),
            attribute_names=_attribute_names(paths, name, entry.get("AttributeNames")),
        )
    return channels


def read_resource_config(paths: Paths) -> ResourceConfig:
    """Hosts from `resourceconfig.json`; absent → a single host `algo-1`."""
    if not paths.resource_config_file.exists():
        return ResourceConfig()
    raw = _read_json(paths.resource_config_file, "resource config")
    hosts = raw.get("hosts") if isinstance(raw, dict) else None
    current = raw.get("current_host") if isinstance(raw, dict) else None
    if not hosts or not isinstance(hosts, list) or current not in hosts:
        raise ClientError(
            f"{paths.resource_config_file} must name `hosts` (a list) and a `current_host` "
            f"among them; got hosts={hosts!r}, current_host={current!r}."
        )
    return ResourceConfig(
        current_host=str(current),
        hosts=tuple(sorted(str(h) for h in hosts)),
        network_interface_name=raw.get("network_interface_name"),
    )


def read_training_environment(paths: Paths) -> TrainingEnvironment:
    """Read all three config files once."""
    return TrainingEnvironment(
        paths=paths,
        hyperparameters=read_hyperparameters(paths),
        channels=read_channels(paths),
        resources=read_resource_config(paths),
    )
