"""Download GluonCV's ImageNet weights of every backbone in the registry into the model cache
($MXNET_HOME/models, default ~/.mxnet/models), so that the list of weights exists once: the
`BACKBONES` records of src/ssd_sagemaker/model/backbones.py.

    python docker/weights.py src/ssd_sagemaker/model/backbones.py

The image's weights stage runs it with only that file copied in (it imports nothing of the
package, so a source change elsewhere does not download the weights again). It needs the
internet (GluonCV's model store); the training job never downloads (see model/network.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable


def load_registry(path: Path) -> ModuleType:
    """The backbones module loaded from its file (the package is not installed at this stage)."""
    spec = importlib.util.spec_from_file_location("ssd_backbones", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def fetch(backbones: Iterable, cache: Path,
          download: Callable[..., str]) -> list[Path]:
    """Each backbone's weights file in `cache`, fetched with `download(model_store_name,
    root=...)` (GluonCV's `get_model_file`: downloads unless present with the right SHA-1).
    A registry `weights_file` that is not the file the store wrote is an error: the runtime
    looks for exactly that name."""
    paths = []
    for backbone in backbones:
        path = Path(download(backbone.model_store_name, root=str(cache)))
        if path != cache / backbone.weights_file:
            raise ValueError(f"{backbone.name}: GluonCV's model store wrote {path}, but the "
                             f"registry expects {cache / backbone.weights_file}")
        paths.append(path)
    for lock in cache.glob("*.lock"):
        lock.unlink()
    return paths


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from gluoncv.model_zoo.model_store import get_model_file

    registry = load_registry(Path(argv[0]))
    home = os.environ.get("MXNET_HOME") or os.path.join("~", ".mxnet")
    cache = Path(home).expanduser() / "models"
    for path in fetch(registry.BACKBONES.values(), cache, get_model_file):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
