"""One place for the environment: every variable the code reads is a named constant of
`variables.py` (no name built from parts), and the one reader parses each kind, collecting
every problem."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ssd_sagemaker import variables
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.variables import VariableReader

SRC = Path(__file__).resolve().parents[2] / "src" / "ssd_sagemaker"
NAME = re.compile(r"^(SSD|SAGEMAKER|MXNET|OMP|CUDA|TRAINING)_[A-Z0-9_]+$")


def test_no_environment_name_is_built_with_an_f_string():
    built = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and re.match(r"^(SSD|SAGEMAKER)_$",
                                                                str(first.value)):
                    built.append(f"{path.name}:{node.lineno}")
    assert built == []


def test_variable_names_are_written_out_only_in_the_variables_module():
    elsewhere = []
    for path in SRC.rglob("*.py"):
        if path.name == "variables.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("get", "setdefault", "pop") and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and NAME.match(str(node.args[0].value)):
                elsewhere.append(f"{path.name}:{node.lineno} {node.args[0].value}")
    assert elsewhere == []
    assert all(getattr(variables, name) == name for name in dir(variables) if NAME.match(name))


def test_each_kind_is_parsed_and_every_problem_named_at_once():
    reader = VariableReader({"A": " 7 ", "B": "0", "C": "1e400", "D": "http", "E": "Bar",
                             "F": "blue", "G": "0.5", "H": "2"})
    assert reader.integer("A", 1, 1) == 7
    assert reader.integer("B", 3, 1) == 3          # out of range: the default, and a problem
    assert reader.seconds("C", 5.0) == 5.0         # infinite
    assert reader.port("D", 8080) == 8080
    assert reader.choice("E", "auto", ("auto", "bar")) == "bar"
    assert reader.choice("F", "auto", ("auto", "bar")) == "auto"
    assert reader.number("G", 0.1, 0.0, 1.0) == 0.5
    assert reader.number("H", 0.1, 0.0, 1.0) == 0.1
    assert reader.integer("unset", 4, 1) == 4
    with pytest.raises(ClientError) as error:
        reader.check("serving")
    assert str(error.value) == (
        "Invalid serving environment: B='0' is not an integer from 1 (default 3). "
        "C='1e400' is not a number of seconds above 0 (default 5). "
        "D='http' is not a TCP port (1-65535). F='blue' is not one of auto, bar. "
        "H='2' is not a number from 0 to 1 (default 0.1).")
    VariableReader({}).check("training")  # nothing wrong: no error
