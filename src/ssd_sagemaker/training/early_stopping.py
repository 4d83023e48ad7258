"""Early stopping on validation mAP, exactly as the built-in documents it: after
`early_stopping_min_epochs`, stop when `early_stopping_patience` epochs in a row brought no
improvement, where (mAP − best) / best < `early_stopping_tolerance` is *not* an improvement."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

# What a checkpoint keeps; the settings come from the hyperparameters of the resumed run.
# (Checkpoints of earlier versions also hold the settings: they are ignored.)
_STATE = ("best_map", "best_epoch", "epochs_without_improvement")


@dataclass
class EarlyStopping:
    """Tracks the best mAP; `update` returns True when training should stop."""

    enabled: bool
    min_epochs: int
    patience: int
    tolerance: float
    best_map: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATE}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        for name in _STATE:
            if name in saved:
                setattr(self, name, saved[name])

    def is_improvement(self, score: float) -> bool:
        """The documented relative test; from a best of 0, any positive mAP improves."""
        if self.best_map is None:
            return True
        if self.best_map <= 0.0:
            return score > self.best_map
        return (score - self.best_map) / self.best_map >= self.tolerance

    def update(self, epoch: int, score: float) -> bool:
        """Record epoch `epoch`'s (0-based) mAP; True means stop after this epoch."""
        if self.is_improvement(score):
            if self.best_map is None or score > self.best_map:
                self.best_map, self.best_epoch = score, epoch
            self.epochs_without_improvement = 0
            LOG.info("epoch %d: mAP %.4f is an improvement (best %.4f at epoch %d)",
                     epoch, score, self.best_map, self.best_epoch)
        else:
            self.epochs_without_improvement += 1
            LOG.info("epoch %d: mAP %.4f is not an improvement on %.4f by the relative "
                     "tolerance %g (%d epoch(s) without improvement)", epoch, score,
                     self.best_map, self.tolerance, self.epochs_without_improvement)
        if not self.enabled:
            return False
        epochs_run = epoch + 1
        if self.epochs_without_improvement >= self.patience and epochs_run >= self.min_epochs:
            LOG.info("early stopping after epoch %d: %d epochs without improvement "
                     "(patience %d, min epochs %d); best mAP %.4f at epoch %d", epoch,
                     self.epochs_without_improvement, self.patience, self.min_epochs,
                     self.best_map, self.best_epoch)
            return True
        return False
