"""Which models a multi-model server holds, shared by all its gunicorn workers.

Each worker is a separate process, and SageMaker's `POST /models`, `POST /models/NAME/invoke`
and `DELETE /models/NAME` may reach different ones. So the set of models is one JSON file in a
folder private to the server (made by the master before it forks), read under a shared and
changed under an exclusive `fcntl.flock` on a lock file beside it, and replaced atomically. A
worker that answers for a model loads its own copy once, the first time it needs it
(`loaded_models.py`); the entry's `token`, new at every load, tells a worker's copy from a
newer model loaded under the same name after a delete.

A load is two steps: `reserve` (the name is taken: a second load of it is 409) and, once the
worker has loaded the model and it answered, `publish` (now listed and invocable). A load that
fails is `release`d. A reservation whose worker died (killed mid-load) is ignored, so the name
is not blocked forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ssd_sagemaker.serving.request_errors import RequestError

REGISTRY_FILE = "models.json"
LOCK_FILE = "models.lock"
LOADING, READY = "loading", "ready"


class ModelExists(RequestError):
    """`POST /models` of a name that is loaded or being loaded (409, as SageMaker expects)."""

    status = 409


class ModelNotLoaded(RequestError):
    """A model name the server does not hold (404)."""

    status = 404


@dataclass(frozen=True)
class ModelEntry:
    """One model: its name (SageMaker's opaque key), the folder its artifact was extracted
    to, a token naming this load, and what `GET /models/NAME` describes."""

    name: str
    url: str
    token: str
    state: str = LOADING
    loader_pid: int = 0
    description: dict[str, Any] = field(default_factory=dict)
    copy_bytes: int = 0  # the estimated memory of one worker's copy (memory_budget.py)
    holders: list[int] = field(default_factory=list)  # the workers holding a copy

    def listed(self) -> dict[str, str]:
        """The entry of `GET /models` (the contract's keys)."""
        return {"modelName": self.name, "modelUrl": self.url}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _living(pids: list[int]) -> list[int]:
    return sorted({pid for pid in pids if _alive(pid)})


class ModelRegistry:
    """The models of one server, in `folder` (shared by its workers)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._file = folder / REGISTRY_FILE

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[dict[str, ModelEntry]]:
        """The entries, under the lock; with `exclusive`, what the block leaves in the dict is
        written back."""
        with (self.folder / LOCK_FILE).open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                entries = self._read()
                before = dict(entries)
                yield entries
                if exclusive and entries != before:
                    self._write(entries)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, ModelEntry]:
        if not self._file.exists():
            return {}
        raw = json.loads(self._file.read_text(encoding="utf-8"))
        entries = (ModelEntry(**item) for item in raw["models"])
        # A reservation whose loading worker died will never be published.
        return {entry.name: entry for entry in entries
                if entry.state == READY or _alive(entry.loader_pid)}

    def _write(self, entries: dict[str, ModelEntry]) -> None:
        partial = self._file.with_name(f".{REGISTRY_FILE}.{os.getpid()}")
        partial.write_text(json.dumps({"models": [asdict(e) for e in entries.values()]}),
                           encoding="utf-8")
        os.replace(partial, self._file)

    def reserve(self, name: str, url: str) -> ModelEntry:
        """Take `name` for a load by this process; ModelExists when it is taken."""
        with self._locked(exclusive=True) as entries:
            held = entries.get(name)
            if held is not None:
                what = "is loaded" if held.state == READY else "is being loaded"
                raise ModelExists(f"model '{name}' {what} (from {held.url}); unload it first "
                                  f"with DELETE /models/{name}")
            entry = ModelEntry(name, url, uuid.uuid4().hex, LOADING, os.getpid())
            entries[name] = entry
            return entry

    def publish(self, entry: ModelEntry, description: dict[str, Any], copy_bytes: int = 0
                ) -> ModelEntry:
        """Make a reserved model listed and invocable; this process holds a copy."""
        ready = replace(entry, state=READY, description=description, copy_bytes=copy_bytes,
                        holders=[os.getpid()])
        with self._locked(exclusive=True) as entries:
            entries[entry.name] = ready
        return ready

    def release(self, entry: ModelEntry) -> None:
        """Give up a reservation whose load failed (only that load's, by its token)."""
        with self._locked(exclusive=True) as entries:
            if entries.get(entry.name, None) is not None \
                    and entries[entry.name].token == entry.token:
                del entries[entry.name]

    def add_holder(self, entry: ModelEntry) -> None:
        """Record that this process now holds a copy of `entry`'s load."""
        with self._locked(exclusive=True) as entries:
            held = entries.get(entry.name)
            if held is not None and held.token == entry.token:
                entries[entry.name] = replace(held, holders=[*_living(held.holders),
                                                             os.getpid()])

    def unloaded_bytes(self, workers: int) -> int:
        """The memory the copies not yet loaded will take: every worker of `workers` may load
        each model (a worker that died took its copy with it)."""
        with self._locked(exclusive=False) as entries:
            return sum(e.copy_bytes * max(0, workers - len(_living(e.holders)))
                       for e in entries.values())

    def remove(self, name: str) -> ModelEntry:
        """Unload `name` for every worker; ModelNotLoaded when it is not loaded."""
        with self._locked(exclusive=True) as entries:
            entry = entries.get(name)
            if entry is None or entry.state != READY:
                raise _not_loaded(name)
            del entries[name]
            return entry

    def ready(self, name: str) -> ModelEntry:
        """The loaded model `name`; ModelNotLoaded when there is none (or it is still loading)."""
        with self._locked(exclusive=False) as entries:
            entry = entries.get(name)
        if entry is None or entry.state != READY:
            raise _not_loaded(name)
        return entry

    def models(self) -> list[ModelEntry]:
        """The loaded models, by name."""
        with self._locked(exclusive=False) as entries:
            return sorted((e for e in entries.values() if e.state == READY),
                          key=lambda e: e.name)


def _not_loaded(name: str) -> ModelNotLoaded:
    return ModelNotLoaded(f"model '{name}' is not loaded; load it with POST /models "
                          f'{{"model_name": "{name}", "url": FOLDER}}')
