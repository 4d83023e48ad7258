"""optimizer_states.py: a checkpoint's optimizer state resumes bit-exactly for every optimizer
the project offers, and a states file holding anything but data is refused (never run), the
checkpoint before it being used instead."""

import hashlib
import json
import os
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import STATE_FILE, Checkpointer, CheckpointState
from ssd_sagemaker.training.optimizer_states import RefusedStates, read_optimizer_states

NETWORK = NetworkIdentity.of_classes("vgg-16", 300, ("a",))
OPTIMIZERS = {  # hyperparameters.py's choices, with the settings the trainer gives them
    "sgd": {"momentum": 0.9, "wd": 0.0005},
    "adam": {},
    "rmsprop": {"wd": 0.0005},
    "adadelta": {},
}


class _Affine(gluon.Block):
    """A dense layer from element-wise operators, which MXNet's CPU build also runs in
    float16 (its FullyConnected does not)."""

    def __init__(self):
        super().__init__()
        self.weight = self.params.get("weight", shape=(3, 4))
        self.bias = self.params.get("bias", shape=(3,))

    def forward(self, x):
        weight, bias = self.weight.data(x.context), self.bias.data(x.context)
        return mx.nd.broadcast_mul(x.expand_dims(1), weight).sum(axis=2) + bias


def _net_and_trainer(seed, optimizer="sgd", dtype="float32", **settings):
    mx.random.seed(seed)
    net = _Affine()
    net.initialize(mx.init.Normal(1.0))
    net.cast(dtype)
    schedule = mx.lr_scheduler.MultiFactorScheduler(step=[2], factor=0.1, base_lr=0.05)
    trainer = gluon.Trainer(net.collect_params(), optimizer,
                            dict(OPTIMIZERS[optimizer], learning_rate=0.05, lr_scheduler=schedule,
                                 **settings))
    return net, trainer


def _step(net, trainer, dtype="float32"):
    with autograd.record():
        loss = (net(mx.nd.arange(8).reshape((2, 4)).astype(dtype)) ** 2).sum()
    loss.backward()
    trainer.step(2)


def _save(checkpointer, next_epoch, seed=0, **kw):
    net, trainer = _net_and_trainer(seed, **kw)
    _step(net, trainer)
    checkpointer.save(net, trainer, CheckpointState(next_epoch=next_epoch,
                                                               network=NETWORK.to_json()))
    return net


def _resumed(directory, seed=9, **kw):
    net, trainer = _net_and_trainer(seed, **kw)
    return Checkpointer(directory).resume(net, trainer, NETWORK, [mx.cpu()]), net, trainer


@pytest.mark.parametrize("optimizer, dtype", [(name, "float32") for name in OPTIMIZERS] +
                         [("sgd", "float16"), ("adam", "float16")])
def test_resume_is_bit_exact_for_every_optimizer(tmp_path, optimizer, dtype):
    """float16 weights with multi_precision: the state holds float32 master copies in tuples."""
    settings = {"multi_precision": True} if dtype == "float16" else {}
    net, trainer = _net_and_trainer(0, optimizer, dtype, **settings)
    for _ in range(3):
        _step(net, trainer, dtype)
    Checkpointer(tmp_path).save(net, trainer, CheckpointState(next_epoch=3,
                                                              network=NETWORK.to_json()))
    restored, restored_trainer = _net_and_trainer(1, optimizer, dtype, **settings)
    Checkpointer(tmp_path).resume(restored, restored_trainer, NETWORK, [mx.cpu()])
    assert restored_trainer.learning_rate == trainer.learning_rate == pytest.approx(0.005)
    assert restored_trainer._optimizer.num_update == trainer._optimizer.num_update == 3
    for _ in range(3):  # the schedule, the moments and Adam's bias correction all restored
        _step(net, trainer, dtype)
        _step(restored, restored_trainer, dtype)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(getattr(restored, name).data().asnumpy(),
                                      getattr(net, name).data().asnumpy())


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _replace_states(directory, stem, data):
    """What an attacker with write access to the checkpoint prefix does: new states bytes
    and their SHA-256 and size in the checkpoint's description (and checkpoint.json)."""
    (directory / f"{stem}.states").write_bytes(data)
    for name in (f"{stem}.json", STATE_FILE):
        description = json.loads((directory / name).read_text())
        description["files"][f"{stem}.states"] = {
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (directory / name).write_text(json.dumps(description))


@pytest.mark.parametrize("payload, why", [
    ("code", "it names posix.system, which an optimizer state never holds"),
    ("list", "it holds a list, not the pair (states, optimizer)"),
    ("string_state", "the state of parameter 0 holds a str, not arrays"),
])
def test_a_states_file_holding_more_than_data_is_refused_and_the_previous_checkpoint_used(
        tmp_path, caplog, payload, why):
    marker = tmp_path / "MARKER"
    checkpointer = Checkpointer(tmp_path)
    previous = _save(checkpointer, 1, seed=3)
    _save(checkpointer, 2, seed=4)
    data = {"code": lambda: pickle.dumps((_RunsCode(marker), None)),
            "list": lambda: pickle.dumps([1, 2]),
            "string_state": lambda: pickle.dumps(({0: "x"}, None))}[payload]()
    _replace_states(tmp_path, "checkpoint-0002", data)
    state, net, _ = _resumed(tmp_path)
    assert not marker.exists()
    assert state.next_epoch == 1
    np.testing.assert_array_equal(net.weight.data().asnumpy(), previous.weight.data().asnumpy())
    assert (f"checkpoint checkpoint-0002 in {tmp_path} is damaged: checkpoint-0002.states was "
            f"refused as optimizer state: {why}") in caplog.text
    assert "nothing in it was run" in caplog.text


def test_a_states_file_of_another_optimizer_is_not_resumed(tmp_path, caplog):
    _save(Checkpointer(tmp_path), 1, optimizer="adam")
    assert _resumed(tmp_path, optimizer="sgd")[0] is None
    assert ("checkpoint-0001.states holds the state of mxnet.optimizer.optimizer.Adam; this "
            "job trains with mxnet.optimizer.optimizer.SGD") in caplog.text
    assert "training starts from the beginning" in caplog.text


def test_an_earlier_versions_states_pickle_is_read_as_data(tmp_path):
    """MXNet's own `Trainer.save_states` pickle, as earlier versions wrote it."""
    net, trainer = _net_and_trainer(0, "adam")
    _step(net, trainer)
    trainer.save_states(str(tmp_path / "s.states"))
    saved = read_optimizer_states(tmp_path / "s.states", (tmp_path / "s.states").read_bytes())
    assert saved.optimizer.qualified_name == "mxnet.optimizer.optimizer.Adam"
    assert saved.optimizer.fields["num_update"] == 1
    mean, variance = saved.states[0]
    np.testing.assert_array_equal(mean.asnumpy(), trainer._updaters[0].states[0][0].asnumpy())
    assert variance.shape == trainer._params[0].shape


def test_a_pickle_with_a_builtin_callable_is_refused_by_name(tmp_path):
    with pytest.raises(RefusedStates) as refusal:
        read_optimizer_states(tmp_path / "x.states",
                              pickle.dumps(({0: None}, getattr)))  # a global, never run
    assert str(refusal.value).startswith("x.states was refused as optimizer state: it names "
                                         "builtins.getattr")


def _two_device_net_and_trainer(seed, update_on_kvstore):
    mx.random.seed(seed)
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = _Affine()
    net.initialize(mx.init.Normal(1.0), ctx=contexts)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05},
                            kvstore="device", update_on_kvstore=update_on_kvstore)
    return net, trainer, contexts


def _two_device_step(net, trainer, contexts):
    batch = gluon.utils.split_and_load(mx.nd.arange(16).reshape((4, 4)), contexts)
    with autograd.record():
        losses = [(net(part) ** 2).sum() for part in batch]
    autograd.backward(losses)
    trainer.step(4)


@pytest.mark.parametrize("update_on_kvstore", [True, False])
def test_resume_on_two_devices_is_bit_exact(tmp_path, update_on_kvstore):
    """The kvstore's updater (update_on_kvstore) or one updater per device: each gets the
    states, as Trainer.load_states gives them."""
    net, trainer, contexts = _two_device_net_and_trainer(0, update_on_kvstore)
    for _ in range(2):
        _two_device_step(net, trainer, contexts)
    Checkpointer(tmp_path).save(net, trainer, CheckpointState(next_epoch=1,
                                                              network=NETWORK.to_json()))
    restored, restored_trainer, _ = _two_device_net_and_trainer(1, update_on_kvstore)
    Checkpointer(tmp_path).resume(restored, restored_trainer, NETWORK, contexts)
    for _ in range(2):
        _two_device_step(net, trainer, contexts)
        _two_device_step(restored, restored_trainer, contexts)
    for context in contexts:
        np.testing.assert_array_equal(restored.weight.data(context).asnumpy(),
                                      net.weight.data(context).asnumpy())


def _optimizer_with(name, value):
    optimizer = mx.optimizer.SGD(learning_rate=0.1)
    setattr(optimizer, name, value)
    return optimizer


def _looped():
    loop = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize("value, why", [
    (mx.nd.ones((2,)), "mxnet.optimizer.optimizer.SGD's extra holds a _PickledArray"),
    (_looped(), "maximum recursion depth exceeded"),
])
def test_an_optimizer_field_that_is_not_plain_data_is_refused(tmp_path, value, why):
    data = pickle.dumps(({}, _optimizer_with("extra", value)))
    with pytest.raises(RefusedStates) as refusal:
        read_optimizer_states(tmp_path / "x.states", data)
    assert why in str(refusal.value)
