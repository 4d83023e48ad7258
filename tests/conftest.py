"""Hooks for the whole suite (fixtures live in each folder's conftest.py)."""

from __future__ import annotations

import os

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


def pytest_configure(config):
    """In a pytest-xdist worker, MXNet's OpenMP pool gets this worker's share of the CPUs
    (unless OMP_NUM_THREADS is set): two workers each spinning a pool of every CPU run slower
    than one. Set before any test module imports MXNet; the CLI processes the tests start
    inherit it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS",
                              str(max(1, len(os.sched_getaffinity(0)) // int(workers))))


def pytest_collection_modifyitems(config, items):
    """In pytest-xdist workers (scripts/test.sh runs `--dist loadscope`: a module per worker at
    a time, so its module fixtures are made once) the modules holding slow tests come first, so
    the longest units of work do not start last while the other worker idles; of the container
    modules only the first leads (it builds the image) and the others follow the other slow
    modules, so that the second worker does not wait for the same build."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    slow = {_module(item) for item in items if item.get_closest_marker("slow")}
    containers = sorted(module for module in slow if module.startswith(CONTAINER_TESTS))

    def rank(item) -> int:
        module = _module(item)
        if module in containers[1:]:
            return 1
        return 0 if module in slow else 2
    items.sort(key=rank)


CONTAINER_TESTS = "tests/container/"


def _module(item) -> str:
    return item.nodeid.split("::")[0]
