"""Fixtures of the serving tests; their samples are in tests/support/serving_samples.py."""

import pytest

from serving_samples import StubPredictor, export_untrained_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A real exported (untrained) SSD, exported once per session: an export takes seconds."""
    return export_untrained_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def stub():
    return StubPredictor()
