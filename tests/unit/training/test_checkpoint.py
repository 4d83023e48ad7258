"""checkpoint.py: a saved state restores weights, optimizer state and bookkeeping; stale files
go; a checkpoint of another network or with missing files is refused with a clear message."""

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.training.checkpoint import STATE_FILE, Checkpointer, CheckpointState

NETWORK = {"base_network": "vgg-16", "image_shape": 300, "classes": ["a"]}


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


def test_round_trip_restores_weights_optimizer_and_schedule(tmp_path):
    net, trainer = _net_and_trainer(0)
    for _ in range(3):
        _step(net, trainer)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(net, trainer, CheckpointState(
        next_epoch=3, network=NETWORK, early_stopping={"best_map": 0.4, "best_epoch": 1},
        history=[{"epoch": 0}]))

    restored, restored_trainer = _net_and_trainer(1)
    state = checkpointer.load_state()
    assert (state.next_epoch, state.early_stopping["best_map"], state.history) == (3, 0.4, [{"epoch": 0}])
    checkpointer.restore(state, restored, restored_trainer, NETWORK, [mx.cpu()])
    np.testing.assert_array_equal(restored.weight.data().asnumpy(), net.weight.data().asnumpy())
    assert restored_trainer.learning_rate == pytest.approx(0.05)  # past the step at update 2
    # One more identical step on both keeps them identical: momentum state was restored too.
    _step(net, trainer)
    _step(restored, restored_trainer)
    np.testing.assert_allclose(restored.weight.data().asnumpy(), net.weight.data().asnumpy(),
                               rtol=1e-6)


def test_new_checkpoint_replaces_old_files(tmp_path):
    net, trainer = _net_and_trainer(0)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(net, trainer, CheckpointState(next_epoch=1, network=NETWORK))
    checkpointer.save(net, trainer, CheckpointState(next_epoch=2, network=NETWORK,
                                                    interrupted_in_epoch=2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [STATE_FILE, "epoch-0002-partial.params", "epoch-0002-partial.states"]
    assert json.loads((tmp_path / STATE_FILE).read_text())["interrupted_in_epoch"] == 2


def test_no_checkpoint_is_none(tmp_path):
    assert Checkpointer(tmp_path / "absent").load_state() is None


def test_checkpoint_of_another_network_is_refused(tmp_path):
    net, trainer = _net_and_trainer(0)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(net, trainer, CheckpointState(next_epoch=1, network=NETWORK))
    other = dict(NETWORK, image_shape=512)
    with pytest.raises(ClientError) as error:
        checkpointer.restore(checkpointer.load_state(), net, trainer, other, [mx.cpu()])
    assert "image_shape 300 → 512" in str(error.value)


def test_missing_or_corrupt_checkpoint_files_are_named(tmp_path):
    net, trainer = _net_and_trainer(0)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(net, trainer, CheckpointState(next_epoch=1, network=NETWORK))
    (tmp_path / "epoch-0001.states").unlink()
    with pytest.raises(ClientError, match="epoch-0001.states, which is missing"):
        checkpointer.load_state()
    (tmp_path / STATE_FILE).write_text("{broken")
    with pytest.raises(ClientError, match="unreadable"):
        checkpointer.load_state()
