"""The state of a run that outlives its process: the learner's weights and optimizer (files,
through the `Checkpointer`) and the parts that each save and restore their own state —
early stopping and the per-epoch history. One place puts them into a checkpoint and takes
them out of one, so a new resumable part is one entry in `TrainingState.parts`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ssd_sagemaker.metrics import EpochLog
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import Checkpointer, CheckpointState
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.loop import Learner

LOG = logging.getLogger(__name__)


class Resumable(Protocol):
    """A part of the run that a checkpoint keeps."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


@dataclass
class TrainingState:
    """Early stopping, the history and the checkpoints of one run. `network` (base network,
    image shape, classes) must match a checkpoint's for it to resume; `optimizer_state` is
    False under dist_async, where the servers own it."""

    stopping: EarlyStopping
    epoch_log: EpochLog
    checkpointer: Checkpointer
    network: NetworkIdentity
    optimizer_state: bool = True

    @property
    def parts(self) -> dict[str, Resumable]:
        """Each part under its name in the checkpoint's description (`CheckpointState`)."""
        return {"early_stopping": self.stopping, "history": self.epoch_log}

    def resume(self, learner: Learner) -> int:
        """Restore the learner and every part from the newest intact checkpoint; the epoch
        to start from (0 without one)."""
        saved = self.checkpointer.resume(learner.net, learner.trainer, self.network,
                                         learner.contexts)
        if saved is None:
            return 0
        for name, part in self.parts.items():
            part.load_state_dict(getattr(saved, name))
        return saved.next_epoch

    def restore_best(self, learner: Learner, epochs_run: int) -> None:
        """Put the best epoch's weights back into the learner's network when an earlier epoch
        than the last was the best (so the best is what gets exported)."""
        best = self.stopping.best_epoch
        if best is not None and best != epochs_run - 1:
            LOG.info("exporting the best epoch %d (mAP %.4f), not the last", best,
                     self.stopping.best_map)
            learner.net.load_parameters(str(self.checkpointer.best_weights),
                                        ctx=learner.contexts)

    def save(self, learner: Learner, next_epoch: int, interrupted_in: int | None = None) -> None:
        """A checkpoint to resume at `next_epoch` (`interrupted_in`: saved mid-epoch)."""
        self.checkpointer.save(learner.net, learner.trainer, CheckpointState(
            next_epoch=next_epoch, network=self.network.to_json(),
            interrupted_in_epoch=interrupted_in,
            **{name: part.state_dict() for name, part in self.parts.items()}),
            optimizer_state=self.optimizer_state)
