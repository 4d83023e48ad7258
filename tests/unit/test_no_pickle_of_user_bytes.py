"""No code in src/ deserialises a file by running it. Everything the container reads from
S3-backed folders (checkpoints, the model channel, the served artifact) must be read as data:
`pickle.load(s)`, `Unpickler`, `np.load(allow_pickle=True)` and MXNet's pickle readers
(`Trainer.load_states`, `Updater.set_states`, `KVStore.load_optimizer_states`) are refused
here. The one exception is the restricted unpickler of optimizer states, which admits no
callable (see its own tests)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
RESTRICTED_READER = SRC / "ssd_sagemaker" / "training" / "optimizer_states.py"

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal",
                  "shelve", "torch"}
LOADERS = {"load", "loads", "Unpickler", "open"}
MXNET_PICKLE_READERS = {"load_states", "set_states", "load_optimizer_states"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def findings(source: str, name: str = "<source>") -> list[str]:
    """Every place in `source` that would turn file bytes into code."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            head = dotted.split(".")[0]
            if (head in PICKLE_MODULES and node.attr in LOADERS) or \
                    node.attr in MXNET_PICKLE_READERS or (head == "yaml" and node.attr == "load"):
                found.append(f"{where}: {dotted}")
        elif isinstance(node, ast.ImportFrom) and node.module in PICKLE_MODULES:
            found += [f"{where}: from {node.module} import {alias.name}"
                      for alias in node.names if alias.name in LOADERS]
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            found.append(f"{where}: allow_pickle={ast.unparse(node.value)}")
    return found


def test_the_scanner_finds_each_way_of_unpickling() -> None:
    source = "\n".join([
        "import pickle, numpy as np", "pickle.loads(b'')", "pickle.load(handle)",
        "np.load('x.npy', allow_pickle=True)", "trainer.load_states('s')",
        "updater.set_states(data)", "store.load_optimizer_states('s')",
        "class U(pickle.Unpickler): pass", "from pickle import loads",
        "np.load('x.npy')", "mx.nd.load('x.params')", "pickle.dumps(1)"])
    assert sorted(line.split(": ", 1)[1] for line in findings(source)) == sorted([
        "pickle.loads", "pickle.load", "allow_pickle=True", "trainer.load_states",
        "updater.set_states", "store.load_optimizer_states", "pickle.Unpickler",
        "from pickle import loads"])


def test_no_module_of_src_unpickles_file_bytes() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        found += findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    allowed = [line for line in found if line.startswith(
        f"{RESTRICTED_READER.relative_to(ROOT)}:") and line.endswith(": pickle.Unpickler")]
    assert [line for line in found if line not in allowed] == []
    assert len(allowed) == 1  # the restricted reader, whose find_class admits data only
    tree = ast.parse(RESTRICTED_READER.read_text(encoding="utf-8"))
    reader = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  and any(_dotted(base) == "pickle.Unpickler" for base in node.bases))
    assert {item.name for item in reader.body if isinstance(item, ast.FunctionDef)} >= {
        "find_class", "persistent_load"}
