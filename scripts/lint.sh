#!/usr/bin/env bash
# Lint and types, the first step of CI (.ci/run): ruff and mypy at the lock's versions, with
# the rule sets of pyproject.toml ([tool.ruff], [tool.mypy]); any finding fails.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/setup_venv.sh
python -m ruff check --no-cache --output-format concise
python -m mypy --cache-dir "$(mktemp -d)"
