"""Any mix of test folders collects in one pytest run. Pytest imports every `conftest.py` under
the one module name `conftest`, so a test that imports its helpers from `conftest` gets
whichever folder's conftest came last; helpers therefore live in tests/support under names of
their own, and test modules never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_imports_a_conftest_or_another_test_module() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imported_modules(path)
                                                      if name == "conftest"
                                                      or name.startswith("test_"))
                 for path in TESTS.rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_integration_unit_and_container_tests_collect_together() -> None:
    """Integration first: before the helpers moved, its modules then imported the unit or
    container `conftest` and collection stopped on an ImportError."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", "tests/integration", "tests/unit",
                             "tests/container"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0 and "error" not in summary, result.stdout[-3000:]
    assert "tests collected" in summary, summary
