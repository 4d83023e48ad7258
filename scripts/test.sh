#!/usr/bin/env bash
# Set up ./.venv and run the whole test suite (unit + end-to-end train/serve on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_venv.sh
exec python -m pytest -q -rs "$@"
