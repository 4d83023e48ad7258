"""model_registry.py: the multi-model server's set of models, shared by processes through one
locked file. Real processes race for one name; a dead loader's reservation frees the name."""

import multiprocessing
import os
import subprocess
import sys

import pytest

from ssd_sagemaker.serving.model_registry import (
    READY,
    ModelExists,
    ModelNotLoaded,
    ModelRegistry,
)


def _reserve_in_child(folder, name, start, results, done) -> None:
    """Reserve `name` when `start` is set; stay alive (a live loader) until `done` is."""
    start.wait(30)
    try:
        ModelRegistry(folder).reserve(name, f"/models/{os.getpid()}")
        results.put(("won", os.getpid()))
    except ModelExists as error:
        results.put(("refused", error.status))
    done.wait(30)


def test_of_eight_processes_reserving_one_name_exactly_one_wins(tmp_path):
    context = multiprocessing.get_context("fork")
    results, start, done = context.Queue(), context.Event(), context.Event()
    children = [context.Process(target=_reserve_in_child,
                                args=(tmp_path, "site-a", start, results, done))
                for _ in range(8)]
    for child in children:
        child.start()
    start.set()
    outcomes = [results.get(timeout=30) for _ in children]
    done.set()
    for child in children:
        child.join(30)
    assert sorted(kind for kind, _ in outcomes) == ["refused"] * 7 + ["won"]
    assert {value for kind, value in outcomes if kind == "refused"} == {409}


def test_reserve_publish_list_describe_remove(tmp_path):
    registry = ModelRegistry(tmp_path)
    entry = registry.reserve("b", "/opt/ml/models/b/model")
    assert registry.models() == []  # reserved, not yet loaded
    with pytest.raises(ModelNotLoaded):
        registry.ready("b")
    with pytest.raises(ModelExists, match="'b' is being loaded"):
        registry.reserve("b", "/elsewhere")
    ready = registry.publish(entry, {"classes": ["car"]})
    registry.publish(registry.reserve("a", "/opt/ml/models/a/model"), {})
    other = ModelRegistry(tmp_path)  # another worker sees the same set
    assert [e.name for e in other.models()] == ["a", "b"]
    assert other.ready("b") == ready and ready.state == READY
    assert ready.listed() == {"modelName": "b", "modelUrl": "/opt/ml/models/b/model"}
    with pytest.raises(ModelExists, match="'b' is loaded"):
        other.reserve("b", "/elsewhere")
    assert other.remove("b").token == entry.token
    with pytest.raises(ModelNotLoaded, match="'b' is not loaded") as refused:
        registry.remove("b")
    assert refused.value.status == 404
    again = registry.reserve("b", "/new")
    assert again.token != entry.token  # a worker's copy of the old load is told apart


def test_a_failed_load_releases_only_its_own_reservation(tmp_path):
    registry = ModelRegistry(tmp_path)
    first = registry.reserve("m", "/one")
    registry.release(first)
    second = registry.reserve("m", "/two")
    registry.release(first)  # late release of the old load: the new one stands
    with pytest.raises(ModelExists):
        registry.reserve("m", "/three")
    registry.release(second)
    registry.reserve("m", "/three")


def test_a_reservation_whose_loader_died_does_not_block_the_name(tmp_path):
    code = ("import sys; from pathlib import Path; "
            "from ssd_sagemaker.serving.model_registry import ModelRegistry; "
            f"ModelRegistry(Path({str(tmp_path)!r})).reserve('m', '/killed')")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert "/killed" in (tmp_path / "models.json").read_text()
    entry = ModelRegistry(tmp_path).reserve("m", "/again")  # no 409: its loader is gone
    assert entry.url == "/again"


def _hold_in_child(folder, entry, held, done) -> None:
    ModelRegistry(folder).add_holder(entry)
    held.set()
    done.wait(30)


def test_copies_not_yet_loaded_by_other_workers_stay_promised(tmp_path):
    """A model loaded by one of 3 workers promises 2 more copies; one held by a living worker
    is no longer promised; a copy whose worker died is promised again (its replacement may
    load it)."""
    registry = ModelRegistry(tmp_path)
    entry = registry.publish(registry.reserve("m", "/m"), {}, copy_bytes=100)
    assert registry.unloaded_bytes(workers=3) == 200
    context = multiprocessing.get_context("fork")
    held, done = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(tmp_path, entry, held, done))
    child.start()
    assert held.wait(30)
    assert registry.unloaded_bytes(workers=3) == 100
    done.set()
    child.join(30)
    assert registry.unloaded_bytes(workers=3) == 200
    registry.remove("m")
    assert registry.unloaded_bytes(workers=3) == 0
