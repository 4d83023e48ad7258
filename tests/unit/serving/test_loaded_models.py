"""loaded_models.py: a worker's copies of the registry's models — one load per model and load
token, a new load under an old name replaces the copy, and an unload is dropped by the pruning
thread without any request (real registry files, real Predictors of a tiny detector)."""

import time
from pathlib import Path

import mxnet as mx
import pytest

from ssd_sagemaker.serving.loaded_models import LoadedModels, prune_continually
from ssd_sagemaker.serving.model_registry import ModelRegistry
from ssd_sagemaker.serving.predictor import Predictor
from tiny_model import export_tiny_model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"fruit": export_tiny_model(root / "fruit", classes=("apple", "pear")),
            "vehicles": export_tiny_model(root / "vehicles", classes=("car", "bus"))}


class CountingLoader:
    """Loads real Predictors and counts the loads per folder."""

    def __init__(self):
        self.loads = []

    def __call__(self, entry):
        self.loads.append(entry.url)
        return Predictor(Path(entry.url), mx.cpu())


def _publish(registry, name, folder):
    return registry.publish(registry.reserve(name, str(folder)), {"precision": "float32"})


def test_a_model_is_loaded_once_and_again_only_for_a_new_load(tmp_path, folders):
    registry, loader = ModelRegistry(tmp_path), CountingLoader()
    models = LoadedModels(loader)
    first = _publish(registry, "site", folders["fruit"])
    assert models.predictor(first) is models.predictor(first)
    assert loader.loads == [str(folders["fruit"])]
    registry.remove("site")
    second = _publish(registry, "site", folders["vehicles"])  # same name, another model
    assert models.predictor(second).info.classes == ("car", "bus")
    assert loader.loads == [str(folders["fruit"]), str(folders["vehicles"])]


def test_an_unloaded_model_is_dropped_by_the_thread_without_a_request(tmp_path, folders):
    registry = ModelRegistry(tmp_path)
    models = LoadedModels(CountingLoader())
    models.predictor(_publish(registry, "fruit", folders["fruit"]))
    models.predictor(_publish(registry, "vehicles", folders["vehicles"]))
    prune_continually(models, registry, seconds=0.05)
    registry.remove("fruit")
    deadline = time.monotonic() + 5
    while models.names() != ["vehicles"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert models.names() == ["vehicles"]
