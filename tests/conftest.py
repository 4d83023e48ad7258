"""Hooks for the whole suite (fixtures live in each folder's conftest.py)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Captured output of tests about lone surrogates (file names that are not UTF-8) holds
    them as they were logged; pytest-xdist sends reports between processes as UTF-8 and stops
    the whole run on such a string, so the report carries them backslash-escaped."""
    report = yield
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]
    return report
