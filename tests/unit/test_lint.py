"""The linter and the type checker run with the suite, so CI (`.ci/run` → scripts/test.sh →
pytest) fails on any finding. Their rule sets are in pyproject.toml ([tool.ruff], [tool.mypy])."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]' brings it)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    result = _run_tool("ruff", "check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, f"ruff findings:\n{result.stdout}{result.stderr}"
    assert "All checks passed!" in result.stdout


def test_mypy_finds_nothing_in_src(tmp_path: Path) -> None:
    result = _run_tool("mypy", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, f"mypy findings:\n{result.stdout}{result.stderr}"
    assert "Success: no issues found" in result.stdout
