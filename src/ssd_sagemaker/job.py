"""The training job, read and validated once at the edge, before MXNet is imported: the
`/opt/ml` tree's paths, the typed hyperparameters, the channels, the hosts and the job's
variables. A bad config is refused in a fraction of a second, naming the file and the fix;
everything downstream receives this object (or the narrow parts of it it needs)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from ssd_sagemaker.environment import (
    ChannelConfig,
    Paths,
    ResourceConfig,
    TrainingSettings,
    read_channels,
    read_hyperparameters,
    read_resource_config,
    read_training_settings,
)
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import Hyperparameters, parse_hyperparameters
from ssd_sagemaker.variables import SAGEMAKER_BASE_DIR

FIRST_STEP = ("point SAGEMAKER_BASE_DIR at your /opt/ml tree, or run `ssd-sagemaker demo-data` "
              "to write a demo job there")


@dataclass(frozen=True)
class TrainingJob:
    """Everything `train` reads from its environment, parsed once."""

    paths: Paths
    hyperparameters: Hyperparameters
    channels: Mapping[str, ChannelConfig] = field(default_factory=dict)
    resources: ResourceConfig = ResourceConfig()
    settings: TrainingSettings = TrainingSettings()


def require_job_tree(paths: Paths) -> None:
    """The tree a job needs is there: the base folder and its hyperparameters file. A missing
    one is named with the fix, instead of a complaint about hyperparameters that were never
    read."""
    if not paths.base.is_dir():
        raise ClientError(f"{SAGEMAKER_BASE_DIR}: {paths.base} does not exist (or is not a "
                          f"folder): {FIRST_STEP}.")
    if not paths.hyperparameters_file.exists():
        raise ClientError(f"no hyperparameters file at {paths.hyperparameters_file}: "
                          f"{FIRST_STEP}.")


def require_writable_output(paths: Paths) -> None:
    """`output/` can be written now, not after hours of training: a read-only or full tree is
    named with the fix."""
    try:
        paths.output_dir.mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=paths.output_dir):
            pass
    except OSError as error:
        raise ClientError(f"cannot write {paths.output_dir} ({error.strerror or error}): "
                          f"{SAGEMAKER_BASE_DIR} must be a tree this job can write "
                          f"(model/, output/, checkpoints/).") from None


def read_training_job(paths: Paths, settings: TrainingSettings | None = None) -> TrainingJob:
    """The job of the tree at `paths` (and the training variables, unless already read)."""
    require_job_tree(paths)
    return TrainingJob(
        paths=paths,
        hyperparameters=parse_hyperparameters(read_hyperparameters(paths)),
        channels=read_channels(paths),
        resources=read_resource_config(paths),
        settings=read_training_settings() if settings is None else settings,
    )
