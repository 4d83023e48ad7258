"""Every third-party package src/ imports is declared in pyproject.toml, not left to arrive
through another package's dependencies (which may drop it in any release)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_top_levels() -> set[str]:
    names = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"ssd_sagemaker"}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalised(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
                for requirement in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {module: distributions.get(module) for module in _imported_top_levels()
                  if not {_normalised(d) for d in distributions.get(module, [])} & declared}
    assert undeclared == {}, f"imported by src/ but not in [project] dependencies: {undeclared}"
