"""One gunicorn worker's copies of the models a multi-model server holds (`model_registry.py`):
each loaded at most once per worker, when the worker first needs it, and dropped once the
registry no longer lists that load, so that memory an unload frees is freed in every worker,
including the idle ones (a thread checks every `PRUNE_SECONDS`)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from ssd_sagemaker.serving.model_registry import ModelEntry, ModelRegistry
from ssd_sagemaker.serving.predictor import Predictor

LOG = logging.getLogger(__name__)

PRUNE_SECONDS = 1.0


class LoadedModels:
    """This worker's predictors by model name, each tagged with the registry token of its load."""

    def __init__(self, load: Callable[[ModelEntry], Predictor]):
        self._load = load
        self._copies: dict[str, tuple[str, Predictor]] = {}
        self._lock = threading.Lock()  # held while loading: one load of a model per worker

    def keep(self, entry: ModelEntry, predictor: Predictor) -> None:
        """Hold `predictor`, loaded here for `entry` (the worker that answered the load)."""
        with self._lock:
            self._copies[entry.name] = (entry.token, predictor)

    def predictor(self, entry: ModelEntry) -> Predictor:
        """This worker's copy of `entry`'s model, loaded now if it has none of this load."""
        with self._lock:
            held = self._copies.get(entry.name)
            if held is not None and held[0] == entry.token:
                return held[1]
            predictor = self._load(entry)
            self._copies[entry.name] = (entry.token, predictor)
            LOG.info("worker %d loaded model '%s' from %s", os.getpid(), entry.name, entry.url)
            return predictor

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._copies)

    def prune(self, live: list[ModelEntry]) -> list[str]:
        """Drop the copies of loads the registry no longer lists; their names."""
        tokens = {entry.token for entry in live}
        with self._lock:
            gone = [name for name, (token, _) in self._copies.items() if token not in tokens]
            for name in gone:
                del self._copies[name]
        for name in gone:
            LOG.info("worker %d dropped model '%s' (unloaded)", os.getpid(), name)
        return gone


def prune_continually(models: LoadedModels, registry: ModelRegistry,
                      seconds: float = PRUNE_SECONDS) -> threading.Thread:
    """A daemon thread pruning `models` against `registry` every `seconds`."""
    def run() -> None:
        while True:
            try:
                models.prune(registry.models())
            except Exception:  # a failed check is retried: it must not end the loop
                LOG.exception("worker %d could not read the model registry", os.getpid())
            time.sleep(seconds)

    thread = threading.Thread(target=run, name="model-pruning", daemon=True)
    thread.start()
    return thread
