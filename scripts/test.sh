#!/usr/bin/env bash
# Set up ./.venv and run the whole test suite (unit + end-to-end train/serve on CPU).
# Arguments go to pytest: `scripts/test.sh -m "not slow"` is the fast run (nothing that trains
# a network or starts a server or container), `scripts/test.sh tests/unit/serving` one folder.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/setup_venv.sh
exec python -m pytest -q -rs --durations=20 "$@"
