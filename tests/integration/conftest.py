"""Fixtures of the end-to-end tests; their helpers live in tests/support/cli_runner.py."""

import pytest

from cli_runner import run_cli


@pytest.fixture
def run():
    """The CLI runner, for tests that take it as a parameter."""
    return run_cli
