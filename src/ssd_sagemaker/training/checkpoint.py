"""Checkpoints in `/opt/ml/checkpoints` so a stopped or spot-interrupted job resumes where it
was: network parameters, optimizer state (learning-rate schedule included), the epoch to start
from, early-stopping state and the best epoch's weights.

Each save is one numbered checkpoint, `checkpoint-NNNN.{params,states,json}`, written all or
nothing (temporary files, fsync, rename; see `storage`); the `.json` records every file's size
and SHA-256, and `checkpoint.json` repeats the newest one's. The newest checkpoint and the one
before it are kept (the older ones are removed before a new one is written, so a full disk
never costs the last good one). Resuming takes the newest checkpoint whose files are all
there and intact; a damaged one (an interrupted copy from S3, a truncated file) is reported
and the previous one used, and with none usable training starts from the beginning, with a
warning. The folder is restored from S3, so nothing in it is trusted to be data: the optimizer
state is read by `optimizer_states`' data-only reader (MXNet's own runs `pickle.loads`), and a
states file holding anything else is treated as damage (a matching SHA-256 proves nothing:
whoever writes the file can write the description too)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.storage import (
    TEMPORARY_SUFFIX,
    differs_from,
    fingerprint,
    serialized,
    write_files,
)
from ssd_sagemaker.training.optimizer_states import (
    RefusedStates,
    check_optimizer_states,
    restore_optimizer_states,
)

LOG = logging.getLogger(__name__)

STATE_FILE = "checkpoint.json"
BEST_WEIGHTS_FILE = "best.params"
KEPT_CHECKPOINTS = 2  # the newest and the one before it, to fall back on
_NUMBERED = re.compile(r"^checkpoint-(\d+)\.")
# Files of this program's checkpoints (numbered, and the `epoch-*` ones of earlier versions).
_CHECKPOINT_FILES = ("checkpoint-*", "epoch-*", f".checkpoint-*{TEMPORARY_SUFFIX}")


@dataclass
class CheckpointState:
    """Everything besides tensors that a resumed run needs."""

    next_epoch: int  # the first epoch still to run
    network: dict[str, Any]  # NetworkIdentity.to_json(): must match to resume
    early_stopping: dict[str, Any] = field(default_factory=dict)
    params_file: str = ""
    states_file: str = ""
    interrupted_in_epoch: int | None = None  # set when saved mid-epoch (SIGTERM)
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics so far
    sequence: int = 0  # counts saves: the highest is the newest (0: an earlier version's)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → bytes, sha256


class DamagedCheckpoint(Exception):
    """A checkpoint that cannot be used; the message says why."""


class Checkpointer:
    """Saves numbered checkpoints in one folder and resumes from the newest intact one."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._good: list[str] = []  # stems of checkpoints known intact, oldest first

    @property
    def best_weights(self) -> Path:
        return self.directory / BEST_WEIGHTS_FILE

    # --- saving -------------------------------------------------------------------------

    def save(self, net: gluon.Block, trainer: gluon.Trainer, state: CheckpointState,
             optimizer_state: bool = True) -> Path:
        """Write a new numbered checkpoint, then point `checkpoint.json` at it. A full disk is
        a ClientError naming the folder and the checkpoint's size; the previous checkpoint is
        left intact. `optimizer_state=False` where the state lives on parameter servers
        (dist_async)."""
        state.sequence = self._next_sequence()
        stem = f"checkpoint-{state.sequence:04d}"
        payload = {f"{stem}.params": serialized(net.save_parameters)}
        if optimizer_state:
            payload[f"{stem}.states"] = serialized(trainer.save_states)
        state.params_file = f"{stem}.params"
        state.states_file = f"{stem}.states" if optimizer_state else ""
        state.files = {name: fingerprint(data) for name, data in payload.items()}
        text = (json.dumps(asdict(state), indent=2) + "\n").encode()
        self._remove_all_but(self._good[max(0, len(self._good) - (KEPT_CHECKPOINTS - 1)):])
        what = f"checkpoint {stem} (to resume at epoch {state.next_epoch})"
        write_files(self.directory, dict(payload, **{f"{stem}.json": text}), what)
        write_files(self.directory, {STATE_FILE: text}, f"{STATE_FILE} (pointing at {stem})")
        self._good.append(stem)
        LOG.info("checkpoint %s saved to %s (next epoch %d)", stem, self.directory,
                 state.next_epoch)
        return self.directory / STATE_FILE

    def save_best(self, net: gluon.Block) -> None:
        write_files(self.directory, {BEST_WEIGHTS_FILE: serialized(net.save_parameters)},
                    "the best epoch's weights")

    def _next_sequence(self) -> int:
        numbers = [int(match.group(1)) for path in self.directory.glob("checkpoint-*")
                   if (match := _NUMBERED.match(path.name))]
        return max(numbers, default=0) + 1

    def _remove_all_but(self, keep: Sequence[str]) -> None:
        """Remove this program's checkpoint files except those of the `keep` stems."""
        for pattern in _CHECKPOINT_FILES:
            for path in self.directory.glob(pattern):
                if path.name.split(".")[0] not in keep:
                    path.unlink(missing_ok=True)

    # --- resuming -----------------------------------------------------------------------

    def resume(self, net: gluon.Block, trainer: gluon.Trainer, network: NetworkIdentity,
               contexts: Sequence[mx.Context]) -> CheckpointState | None:
        """Restore the newest intact checkpoint into `net` and `trainer` and return its state;
        None (start from the beginning) when the folder has none. Damaged checkpoints are
        skipped with a warning saying why; a checkpoint of another network is a ClientError
        (that is a configuration mistake, not damage)."""
        candidates, damaged = self._candidates()
        for state in candidates:
            try:
                self._check_network(state, network)
                self._verify_files(state)
                self._restore(state, net, trainer, contexts)
            except DamagedCheckpoint as why:
                damaged.append(f"{Path(state.params_file).stem}: {why}")
                LOG.warning("checkpoint %s in %s is damaged: %s", Path(state.params_file).stem,
                            self.directory, why)
                continue
            self._good = [Path(state.params_file).stem]
            if damaged:
                LOG.warning("resumed from an earlier checkpoint than the newest (damaged: %s)",
                            "; ".join(damaged))
            LOG.info("resumed from checkpoint %s in %s: starting at epoch %d",
                     Path(state.params_file).stem, self.directory, state.next_epoch)
            return state
        if damaged:
            LOG.warning("no usable checkpoint in %s (%s): training starts from the beginning",
                        self.directory, "; ".join(damaged))
        return None

    def _candidates(self) -> tuple[list[CheckpointState], list[str]]:
        """Every readable checkpoint description, newest first (one per checkpoint), and a
        reason for each unreadable one."""
        states: dict[str, CheckpointState] = {}
        unreadable: list[str] = []
        paths = sorted(self.directory.glob("checkpoint-*.json"))
        if (self.directory / STATE_FILE).is_file():
            paths.append(self.directory / STATE_FILE)
        for path in paths:
            try:
                state = CheckpointState(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
                unreadable.append(f"{path.name}: unreadable ({error})")
                LOG.warning("checkpoint description %s is unreadable (%s); ignored", path, error)
                continue
            states.setdefault(state.params_file, state)
        return sorted(states.values(), key=lambda s: s.sequence, reverse=True), unreadable

    def _check_network(self, state: CheckpointState, network: NetworkIdentity) -> None:
        mismatches = NetworkIdentity.from_json(state.network).mismatches(network,
                                                                         "the checkpoint")
        if mismatches:
            raise ClientError(
                f"The checkpoint in {self.directory} was saved for a different network "
                f"({'; '.join(mismatches)}); use a new checkpoint folder "
                f"(CheckpointConfig.S3Uri) or empty it to train this configuration from scratch."
            )

    def _verify_files(self, state: CheckpointState) -> None:
        """Every file present, with the size and SHA-256 recorded when it was written
        (an earlier version recorded none: then presence only)."""
        for name in filter(None, (state.params_file, state.states_file)):
            path = self.directory / name
            if not path.is_file():
                raise DamagedCheckpoint(f"{name} is missing")
            expected = state.files.get(name)
            if expected is not None and (why := differs_from(path, expected)):
                raise DamagedCheckpoint(why)

    def _restore(self, state: CheckpointState, net: gluon.Block, trainer: gluon.Trainer,
                 contexts: Sequence[mx.Context]) -> None:
        """The optimizer state is read through the data-only reader (`optimizer_states`) and
        checked before anything changes: a states file holding anything but data is refused,
        never run. The weights load before the states go in (loading weights resets a kvstore
        that updates on several devices, and its states with it); only a checkpoint of an
        earlier version (no SHA-256 to verify first) can fail after its weights loaded."""
        states_path = self.directory / state.states_file
        try:
            states = states_path.read_bytes() if state.states_file else b""
            if state.states_file:
                check_optimizer_states(trainer, states_path, states)
            net.load_parameters(str(self.directory / state.params_file), ctx=list(contexts))
            if state.states_file:
                restore_optimizer_states(trainer, states_path, states)
        except RefusedStates as refusal:
            raise DamagedCheckpoint(str(refusal)) from None
        except (mx.base.MXNetError, AssertionError, OSError, ValueError, TypeError,
                KeyError) as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise DamagedCheckpoint(f"loading it failed: {lines[-1] if lines else error!r}"
                                    ) from None
        if not state.states_file:
            LOG.info("the checkpoint has no optimizer state (dist_async keeps it on the "
                     "servers): the optimizer restarts from the saved weights")
