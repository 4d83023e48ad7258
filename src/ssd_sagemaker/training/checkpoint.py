"""Checkpoints in `/opt/ml/checkpoints` so a stopped or spot-interrupted job resumes where it
was: network parameters, optimizer state (learning-rate schedule included), the epoch to start
from, early-stopping state and the best epoch's weights.

Atomic by construction: weight files carry the epoch in their name and `checkpoint.json`, which
points at them, is written to a temporary file and renamed — a crash at any moment leaves
either the previous complete checkpoint or the new one, never a mix."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

STATE_FILE = "checkpoint.json"
BEST_WEIGHTS_FILE = "best.params"


@dataclass
class CheckpointState:
    """Everything besides tensors that a resumed run needs."""

    next_epoch: int  # the first epoch still to run
    network: dict[str, Any]  # base_network, image_shape, classes: must match to resume
    early_stopping: dict[str, Any] = field(default_factory=dict)
    params_file: str = ""
    states_file: str = ""
    interrupted_in_epoch: int | None = None  # set when saved mid-epoch (SIGTERM)
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics so far


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Checkpointer:
    """Saves and restores training state in one folder."""

    def __init__(self, directory: Path):
        self.directory = directory

    @property
    def best_weights(self) -> Path:
        return self.directory / BEST_WEIGHTS_FILE

    def save(self, net: gluon.Block, trainer: gluon.Trainer, state: CheckpointState,
             optimizer_state: bool = True) -> Path:
        """Write weights and optimizer state under new names, then commit the state file.
        `optimizer_state=False` where the state lives on parameter servers (dist_async)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = "-partial" if state.interrupted_in_epoch is not None else ""
        tag = f"epoch-{state.next_epoch:04d}{partial}"
        params, states = self.directory / f"{tag}.params", self.directory / f"{tag}.states"
        net.save_parameters(str(params))
        if optimizer_state:
            trainer.save_states(str(states))
        state.params_file, state.states_file = params.name, states.name if optimizer_state else ""
        _atomic_write_text(self.directory / STATE_FILE, json.dumps(asdict(state), indent=2) + "\n")
        self._remove_stale(keep={params.name, states.name})
        LOG.info("checkpoint saved to %s (next epoch %d)", self.directory, state.next_epoch)
        return self.directory / STATE_FILE

    def save_best(self, net: gluon.Block) -> None:
        temporary = self.directory / f".{BEST_WEIGHTS_FILE}.tmp"
        self.directory.mkdir(parents=True, exist_ok=True)
        net.save_parameters(str(temporary))
        os.replace(temporary, self.best_weights)

    def _remove_stale(self, keep: set[str]) -> None:
        for path in self.directory.glob("epoch-*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def load_state(self) -> CheckpointState | None:
        """The saved state, or None when there is no checkpoint."""
        path = self.directory / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = CheckpointState(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise ClientError(
                f"The checkpoint {path} is unreadable ({error}); remove the checkpoint folder's "
                f"contents to start training from the beginning."
            ) from None
        for name in filter(None, (state.params_file, state.states_file)):
            if not (self.directory / name).is_file():
                raise ClientError(f"The checkpoint {path} refers to {name}, which is missing from "
                                  f"{self.directory}; remove the folder's contents to start over.")
        return state

    def restore(self, state: CheckpointState, net: gluon.Block, trainer: gluon.Trainer,
                network: dict[str, Any], contexts: Sequence[mx.Context]) -> None:
        """Load weights and optimizer state; the network must be the one that was saved."""
        if state.network != network:
            differences = ", ".join(f"{key} {state.network.get(key)!r} → {value!r}"
                                    for key, value in network.items()
                                    if state.network.get(key) != value)
            raise ClientError(
                f"The checkpoint in {self.directory} was saved for a different network "
                f"({differences}); use a new checkpoint folder (CheckpointConfig.S3Uri) or "
                f"empty it to train this configuration from scratch."
            )
        net.load_parameters(str(self.directory / state.params_file), ctx=list(contexts))
        if state.states_file:
            trainer.load_states(str(self.directory / state.states_file))
        else:
            LOG.info("the checkpoint has no optimizer state (dist_async keeps it on the "
                     "servers): the optimizer restarts from the saved weights")
        LOG.info("resumed from checkpoint %s: starting at epoch %d", self.directory,
                 state.next_epoch)
