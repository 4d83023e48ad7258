"""The lock (constraints.txt) covers what is declared: every dependency of pyproject.toml (with
its extras) and of both image flavours is pinned there at a version its declaration admits, and
this venv - installed by scripts/setup_venv.sh with `-c constraints.txt` - holds the pinned
versions. A dependency added or changed without `python scripts/lock.py` fails here."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert canonicalize_name(name) not in pins, f"{name} pinned twice"
            pins[canonicalize_name(name)] = version
    return pins


def _image_requirements(flavour: str, dependencies: list[str]) -> list[str]:
    spec = importlib.util.spec_from_file_location("image_requirements",
                                                  ROOT / "docker" / "requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.requirements(dependencies, flavour)


def _declared() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {"dependencies": project["dependencies"],
                **{f"extra {name}": deps
                   for name, deps in project["optional-dependencies"].items()}}
    for flavour in ("cpu", "gpu"):
        declared[f"the {flavour} image"] = _image_requirements(flavour, project["dependencies"])
    return declared


PINS = _pins()
DECLARED = [(where, requirement) for where, requirements in _declared().items()
            for requirement in requirements]


def test_every_line_is_an_exact_pin():
    assert len(PINS) > 40  # the whole tree, not only the direct dependencies
    assert all(version and "," not in version for version in PINS.values())


@pytest.mark.parametrize(("where", "declaration"), DECLARED,
                         ids=[f"{where}: {declaration}" for where, declaration in DECLARED])
def test_each_declared_dependency_is_pinned_where_its_declaration_allows(where, declaration):
    requirement = Requirement(declaration)
    name = canonicalize_name(requirement.name)
    assert name in PINS, (f"{declaration} ({where}) is not in constraints.txt: run "
                          f"`python scripts/lock.py`")
    assert requirement.specifier.contains(PINS[name], prereleases=True), (
        f"constraints.txt pins {name}=={PINS[name]}, which {declaration} ({where}) excludes: "
        f"run `python scripts/lock.py`")


def test_this_venv_holds_the_locked_versions():
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version
                 for dist in importlib.metadata.distributions()}
    drift = {name: (installed[name], pinned) for name, pinned in PINS.items()
             if name in installed and installed[name] != pinned}
    assert not drift, f"installed vs locked: {drift}; rerun scripts/setup_venv.sh"
    assert installed.get("mxnet") == PINS["mxnet"]
