#!/usr/bin/env bash
# Set up ./.venv and run the whole test suite (unit + end-to-end train/serve on CPU).
# Arguments go to pytest: `scripts/test.sh -m "not slow"` is the fast run (nothing that trains
# a network or starts a server or container), `scripts/test.sh tests/unit/serving` one folder.
# Tests run in SSD_TEST_WORKERS pytest-xdist workers (default 2; `-n 0` runs them in this
# process), a module per worker at a time, modules holding slow tests first
# (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/setup_venv.sh
# glibc keeps what a process freed in per-thread arenas and raises its mmap threshold after
# every large free, so a process building networks of many sizes grows: a worker of the whole
# suite reached 14.6 GB. Two arenas and a fixed 1 MB threshold (large buffers mmapped, returned
# on free): tests/unit/model ends at 0.76 GB instead of 2.5 GB, in the same time.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1048576}"
exec python -m pytest -q -rs --durations=20 -n "${SSD_TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@"
