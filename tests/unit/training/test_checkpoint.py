"""checkpoint.py: a saved state restores weights, optimizer state and bookkeeping; stale files
go; a checkpoint of another network or with missing files is refused with a clear message."""

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ssd_sagemaker import storage
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import STATE_FILE, Checkpointer, CheckpointState

NETWORK = NetworkIdentity.of_classes("vgg-16", 300, ("a",))
# how an earlier version described it (no num_classes)
EARLIER_NETWORK = {"base_network": "vgg-16", "image_shape": 300, "classes": ["a"]}


def _net_and_trainer(seed):
    mx.random.seed(seed)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    schedule = mx.lr_scheduler.MultiFactorScheduler(step=[2], factor=0.1, base_lr=0.5)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.5, "momentum": 0.9, "lr_scheduler": schedule})
    return net, trainer


def _step(net, trainer):
    with autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)


def _save(checkpointer, next_epoch, seed=0, **fields):
    net, trainer = _net_and_trainer(seed)
    _step(net, trainer)
    checkpointer.save(net, trainer, CheckpointState(next_epoch=next_epoch,
                                                    network=NETWORK.to_json(), **fields))
    return net


def _resumed(checkpointer, seed=1):
    net, trainer = _net_and_trainer(seed)
    return checkpointer.resume(net, trainer, NETWORK, [mx.cpu()]), net, trainer


def test_round_trip_restores_weights_optimizer_and_schedule(tmp_path):
    net, trainer = _net_and_trainer(0)
    for _ in range(3):
        _step(net, trainer)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(net, trainer, CheckpointState(
        next_epoch=3, network=NETWORK.to_json(), early_stopping={"best_map": 0.4, "best_epoch": 1},
        history=[{"epoch": 0}]))

    restored, restored_trainer = _net_and_trainer(1)
    state = Checkpointer(tmp_path).resume(restored, restored_trainer, NETWORK, [mx.cpu()])
    assert (state.next_epoch, state.early_stopping["best_map"], state.history) == \
        (3, 0.4, [{"epoch": 0}])
    np.testing.assert_array_equal(restored.weight.data().asnumpy(), net.weight.data().asnumpy())
    assert restored_trainer.learning_rate == pytest.approx(0.05)  # past the step at update 2
    # One more identical step on both keeps them identical: momentum state was restored too.
    _step(net, trainer)
    _step(restored, restored_trainer)
    np.testing.assert_allclose(restored.weight.data().asnumpy(), net.weight.data().asnumpy(),
                               rtol=1e-6)


def test_the_newest_and_the_previous_checkpoint_are_kept(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    for epoch in (1, 2, 3):
        _save(checkpointer, epoch)
    _save(checkpointer, 3, interrupted_in_epoch=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"checkpoint-000{n}.{ext}" for n in (3, 4)
                     for ext in ("json", "params", "states")] + [STATE_FILE]
    latest = json.loads((tmp_path / STATE_FILE).read_text())
    assert (latest["sequence"], latest["next_epoch"], latest["interrupted_in_epoch"]) == (4, 3, 3)
    assert latest == json.loads((tmp_path / "checkpoint-0004.json").read_text())
    assert latest["files"]["checkpoint-0004.params"]["bytes"] == \
        (tmp_path / "checkpoint-0004.params").stat().st_size


def test_resume_takes_the_newest_checkpoint_and_numbering_continues(tmp_path):
    _save(Checkpointer(tmp_path), 1, seed=3)
    newest = _save(Checkpointer(tmp_path), 2, seed=4)  # a new process: numbering goes on
    checkpointer = Checkpointer(tmp_path)
    state, net, _ = _resumed(checkpointer)
    assert (state.next_epoch, state.sequence) == (2, 2)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), newest.weight.data().asnumpy())
    _save(checkpointer, 3)
    # The one resumed from stays as the fallback of the new one; the older one goes.
    assert sorted(p.stem for p in tmp_path.glob("checkpoint-*.json")) == \
        ["checkpoint-0002", "checkpoint-0003"]


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("file, how", [("params", "truncated"), ("params", "flipped"),
                                       ("states", "truncated"), ("states", "missing"),
                                       ("params", "empty"), ("json", "truncated")])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, file, how):
    checkpointer = Checkpointer(tmp_path)
    previous = _save(checkpointer, 1, seed=3)
    _save(checkpointer, 2, seed=4)
    _damage(tmp_path / f"checkpoint-0002.{file}", how)
    if file == "json":
        _damage(tmp_path / STATE_FILE, how)
    state, net, _ = _resumed(Checkpointer(tmp_path))
    assert state.next_epoch == 1
    np.testing.assert_array_equal(net.weight.data().asnumpy(), previous.weight.data().asnumpy())
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    if file == "json":
        assert "checkpoint-0002.json is unreadable" in warnings
    else:
        assert f"checkpoint checkpoint-0002 in {tmp_path} is damaged: checkpoint-0002.{file}" \
            in warnings
        assert {"truncated": "truncated", "flipped": "SHA-256", "missing": "is missing",
                "empty": "has 0 bytes"}[how] in warnings
    assert "resumed from an earlier checkpoint than the newest" in warnings


def test_with_every_checkpoint_damaged_training_starts_fresh_with_a_warning(tmp_path, caplog):
    checkpointer = Checkpointer(tmp_path)
    _save(checkpointer, 1)
    _save(checkpointer, 2)
    for name in ("checkpoint-0001.params", "checkpoint-0002.states"):
        _damage(tmp_path / name, "truncated")
    state, net, _ = _resumed(Checkpointer(tmp_path), seed=7)
    assert state is None
    fresh, _ = _net_and_trainer(7)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), fresh.weight.data().asnumpy())
    assert any("no usable checkpoint in" in r.getMessage() and "starts from the beginning" in
               r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # The next save is numbered after the damaged ones, which it replaces.
    after = Checkpointer(tmp_path)
    _save(after, 1)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.json")) == ["checkpoint-0003.json"]


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path):
    """Before numbering: `epoch-NNNN.params/.states` and checkpoint.json without sizes."""
    net, trainer = _net_and_trainer(5)
    net.save_parameters(str(tmp_path / "epoch-0002.params"))
    trainer.save_states(str(tmp_path / "epoch-0002.states"))
    (tmp_path / STATE_FILE).write_text(json.dumps(
        {"next_epoch": 2, "network": EARLIER_NETWORK, "params_file": "epoch-0002.params",
         "states_file": "epoch-0002.states", "history": [{"epoch": 0}, {"epoch": 1}]}))
    checkpointer = Checkpointer(tmp_path)
    state, restored, _ = _resumed(checkpointer)
    assert (state.next_epoch, len(state.history)) == (2, 2)
    np.testing.assert_array_equal(restored.weight.data().asnumpy(), net.weight.data().asnumpy())
    _save(checkpointer, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != STATE_FILE) == [
        "checkpoint-0001.json", "checkpoint-0001.params", "checkpoint-0001.states",
        "epoch-0002.params", "epoch-0002.states"]


def test_a_damaged_checkpoint_of_an_earlier_version_starts_fresh(tmp_path, caplog):
    net, trainer = _net_and_trainer(5)
    net.save_parameters(str(tmp_path / "epoch-0002.params"))
    _damage(tmp_path / "epoch-0002.params", "truncated")
    (tmp_path / STATE_FILE).write_text(json.dumps(
        {"next_epoch": 2, "network": EARLIER_NETWORK, "params_file": "epoch-0002.params"}))
    assert _resumed(Checkpointer(tmp_path))[0] is None
    assert "epoch-0002 in" in caplog.text and "loading it failed" in caplog.text


def test_no_checkpoint_is_none(tmp_path):
    assert _resumed(Checkpointer(tmp_path / "absent"))[0] is None


def test_checkpoint_of_another_network_is_refused(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    _save(checkpointer, 1)
    net, trainer = _net_and_trainer(0)
    other = NetworkIdentity.of_classes("vgg-16", 512, ("b",))
    with pytest.raises(ClientError) as error:
        checkpointer.resume(net, trainer, other, [mx.cpu()])
    assert "image_shape: the checkpoint has 300, the job asks for 512" in str(error.value)
    assert "classes: the checkpoint has ['a'], the job asks for ['b']" in str(error.value)
    assert "base_network" not in str(error.value)


def test_best_weights_are_replaced_whole(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    first, second = _net_and_trainer(1)[0], _net_and_trainer(2)[0]
    checkpointer.save_best(first)
    checkpointer.save_best(second)
    loaded = _net_and_trainer(3)[0]
    loaded.load_parameters(str(checkpointer.best_weights))
    np.testing.assert_array_equal(loaded.weight.data().asnumpy(), second.weight.data().asnumpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.params"]


def test_a_save_cut_short_leaves_the_previous_checkpoint_the_newest(tmp_path, monkeypatch):
    """A crash between the renames of one save: the files already renamed have no
    description, so the previous checkpoint is still the one resumed from."""
    checkpointer = Checkpointer(tmp_path)
    previous = _save(checkpointer, 1, seed=3)
    renames = []

    def crash_on_second_rename(source, target):
        renames.append(target)
        if len(renames) == 2:
            raise KeyboardInterrupt("the process dies here")
        return real_replace(source, target)

    real_replace = storage.os.replace
    monkeypatch.setattr(storage.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        _save(checkpointer, 2, seed=4)
    monkeypatch.undo()
    assert json.loads((tmp_path / STATE_FILE).read_text())["sequence"] == 1
    state, net, _ = _resumed(Checkpointer(tmp_path))
    assert (state.sequence, state.next_epoch) == (1, 1)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), previous.weight.data().asnumpy())
