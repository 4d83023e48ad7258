"""Fixtures of the end-to-end tests; their helpers live in tests/support/cli_runner.py."""

import pytest

from cli_runner import run_cli
from fitted_model import fit_eight_image_detector
from made_once import made_once
from serve_process import Server
from small_detector import fit_small_detector
from tiny_model import export_tiny_model


@pytest.fixture
def run():
    """The CLI runner, for tests that take it as a parameter."""
    return run_cli


@pytest.fixture(scope="module")
def tiny_opt_ml(tmp_path_factory):
    """An /opt/ml tree whose model/ is the tiny detector (forwards in milliseconds)."""
    base = tmp_path_factory.mktemp("opt_ml")
    export_tiny_model(base / "model")
    return base


@pytest.fixture(scope="module")
def tiny_server(tiny_opt_ml):
    """`serve` with one worker on the tiny detector, stopped (exit 0 asserted) after the module."""
    server = Server(tiny_opt_ml, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.fixture(scope="session")
def eight_image_detector(tmp_path_factory):
    """The detector fitted to 8 synthetic images (about a minute), fitted once per run (by
    whichever test worker asks first) for every test that needs one that detects (tests copy
    its model directory before writing beside it)."""
    return made_once(tmp_path_factory, "eight_image_detector", fit_eight_image_detector)


@pytest.fixture(scope="session")
def small_detector(tmp_path_factory):
    """The small SSD fitted to 256 plain images (about 30 s), fitted once per run (by whichever
    test worker asks first) for the tests that judge tiling on images it never saw (tests copy
    its model directory before writing beside it)."""
    return made_once(tmp_path_factory, "small_detector", fit_small_detector)
