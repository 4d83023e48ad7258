"""A costly session fixture made once per run even when pytest-xdist runs the suite in several
worker processes (each has its own session): the first worker to ask makes it under a lock in
the run's shared temporary folder and records the result; the others wait for the lock and
take that result (pytest-xdist's documented pattern, with the standard library's flock)."""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str,
              make: Callable[[Path], T]) -> T:
    """`make(folder)` run once per test run; its (picklable) result for every worker. Under one
    process it is simply made in a new temporary folder."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's
    result = shared / f"{name}.pickle"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            folder = shared / name
            folder.mkdir(exist_ok=True)  # a failed first attempt may have left it
            made = make(folder)
            result.write_bytes(pickle.dumps(made))
        return pickle.loads(result.read_bytes())
