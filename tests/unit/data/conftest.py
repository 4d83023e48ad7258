"""Fixtures shared by the data tests."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture()
def writers():
    """Pipe-mode feeder processes (`planting.start_pipe_writer`) a test starts; killed after."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
